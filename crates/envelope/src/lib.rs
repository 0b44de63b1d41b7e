//! Berth's format for bytes at rest.
//!
//! A blob's plaintext is cut into chunks of [`CHUNK_LEN`] bytes (the last one shorter, an empty
//! blob one empty chunk), and each chunk is sealed with AES-256-GCM under the blob's own data
//! key. The nonce of chunk `i` is the blob's 7-byte random prefix, `i` as a big-endian `u32`,
//! and one byte that marks the last chunk (the STREAM construction): chunks cannot be
//! reordered, dropped from the end or moved to another blob without the open failing, and a
//! range is read by opening only the chunks it touches. Sealed chunks are stored back to back
//! with nothing between them, so chunk `i` starts at `i × (CHUNK_LEN + tags)`.
//!
//! `KMS_DSSE` is two independent layers: each chunk is sealed under the first layer's key and
//! the result again under the second's (two data keys, two prefixes, two tags per chunk).
//!
//! Between the requests of a chunked upload, the plaintext that does not yet fill a chunk is
//! kept sealed too ([`Envelope::seal_staged`]): under keys derived from the blob's data keys,
//! with a random nonce each time (it is sealed again with every request that adds to it), bound
//! to the upload and the chunk index it will become.
//!
//! Digests are always those of the plaintext; this crate knows nothing of them, of storage or
//! of how data keys are wrapped.

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use bytes::{Bytes, BytesMut};

/// Plaintext bytes per chunk.
pub const CHUNK_LEN: usize = 64 * 1024;
/// What sealing adds to a chunk, per layer.
pub const TAG_LEN: usize = 16;
pub const KEY_LEN: usize = 32;
pub const PREFIX_LEN: usize = 7;
/// A blob's keys as stored (wrapped): per layer, the data key then the nonce prefix.
pub const LAYER_KEY_LEN: usize = KEY_LEN + PREFIX_LEN;
/// Chunk indexes are 32 bits in the nonce: 256 TiB per blob.
const MAX_CHUNKS: u64 = 1 << 32;
const STAGED_INFO: &[u8] = b"berth staged chunk v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error(
        "sealed chunk {chunk} does not open: the stored bytes are damaged, out of order, or sealed under another key"
    )]
    Damaged { chunk: u64 },
    #[error("the sealed bytes end inside chunk {chunk}, before the blob does")]
    Truncated { chunk: u64 },
    #[error("the sealed bytes go on past the blob's last chunk")]
    TrailingBytes,
    #[error("a blob of {0} bytes is larger than the format holds")]
    TooLarge(u64),
    #[error("a blob's keys are one or two layers of {LAYER_KEY_LEN} bytes, not {0} bytes")]
    KeyLength(usize),
    #[error("the range {start}-{end} is not within the blob's {len} bytes")]
    Range { start: u64, end: u64, len: u64 },
    #[error("the staged part of the upload does not open: damaged, or staged for another upload")]
    StagedDamaged,
    #[error("the wrapped value does not open: damaged, or wrapped under another key or context")]
    WrappedDamaged,
    #[error("the sealed value does not open: damaged, or sealed under other keys or for another context")]
    ValueDamaged,
}

pub type Result<T> = std::result::Result<T, EnvelopeError>;

mod wrap;
pub use wrap::{WRAP_OVERHEAD, generate_key, unwrap, wrap};

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).expect("system randomness");
    b
}

/// The keys of one blob, one per layer: what is wrapped under the repository's key.
#[derive(Clone, PartialEq, Eq)]
pub struct BlobKeys {
    layers: Vec<[u8; LAYER_KEY_LEN]>,
}

impl std::fmt::Debug for BlobKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key bytes.
        write!(f, "BlobKeys({} layers)", self.layers.len())
    }
}

impl Drop for BlobKeys {
    fn drop(&mut self) {
        for layer in &mut self.layers {
            for b in layer.iter_mut() {
                // Volatile, so that clearing memory about to be freed is not optimized away.
                unsafe { std::ptr::write_volatile(b, 0) };
            }
        }
    }
}

impl BlobKeys {
    /// New random keys for `layers` layers (1, or 2 for `KMS_DSSE`).
    pub fn generate(layers: usize) -> Self {
        assert!((1..=2).contains(&layers), "one or two layers");
        BlobKeys { layers: (0..layers).map(|_| random()).collect() }
    }

    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// The bytes to wrap: each layer's key and prefix, in layer order.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.layers.concat()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(LAYER_KEY_LEN) || bytes.len() / LAYER_KEY_LEN > 2 {
            return Err(EnvelopeError::KeyLength(bytes.len()));
        }
        let layers =
            bytes.chunks_exact(LAYER_KEY_LEN).map(|c| c.try_into().expect("chunks_exact gives whole layers")).collect();
        Ok(BlobKeys { layers })
    }

    pub fn envelope(&self) -> Envelope {
        let layers = self
            .layers
            .iter()
            .map(|bytes| {
                let (key, prefix) = bytes.split_at(KEY_LEN);
                let prk = Salt::new(HKDF_SHA256, &[]).extract(key);
                let staged =
                    prk.expand(&[STAGED_INFO], &AES_256_GCM).expect("an AES-256 key is a valid HKDF output length");
                Layer {
                    key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES key")),
                    staged: LessSafeKey::new(UnboundKey::from(staged)),
                    prefix: prefix.try_into().expect("a 7-byte prefix"),
                }
            })
            .collect();
        Envelope { layers: Arc::new(layers) }
    }
}

struct Layer {
    key: LessSafeKey,
    /// Seals what an upload keeps between requests (random nonces, never the chunk nonces).
    staged: LessSafeKey,
    prefix: [u8; PREFIX_LEN],
}

impl Layer {
    fn nonce(&self, index: u64, last: bool) -> Nonce {
        let mut n = [0u8; NONCE_LEN];
        n[..PREFIX_LEN].copy_from_slice(&self.prefix);
        n[PREFIX_LEN..NONCE_LEN - 1].copy_from_slice(&(index as u32).to_be_bytes());
        n[NONCE_LEN - 1] = last as u8;
        Nonce::assume_unique_for_key(n)
    }
}

fn chunk_aad(layer: usize) -> Aad<[u8; 15]> {
    let mut a = *b"berth blob v1\0\0";
    a[14] = layer as u8;
    Aad::from(a)
}

fn staged_aad(context: &[u8], index: u64, layer: usize) -> Vec<u8> {
    let mut a = b"berth staged v1\0".to_vec();
    a.extend_from_slice(&index.to_be_bytes());
    a.push(layer as u8);
    a.extend_from_slice(context);
    a
}

fn value_aad(context: &[u8], layer: usize) -> Vec<u8> {
    let mut a = b"berth value v1\0".to_vec();
    a.push(layer as u8);
    a.extend_from_slice(context);
    a
}

/// A blob's keys in use: seals and opens its chunks. Cheap to clone.
#[derive(Clone)]
pub struct Envelope {
    layers: Arc<Vec<Layer>>,
}

/// Where in the sealed bytes a plaintext range lies: inclusive offsets, as a ranged read asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedSpan {
    pub start: u64,
    pub end: u64,
}

impl Envelope {
    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// What sealing adds to each chunk.
    pub fn overhead(&self) -> usize {
        TAG_LEN * self.layers.len()
    }

    /// The stored size of a full chunk.
    pub fn sealed_chunk_len(&self) -> usize {
        CHUNK_LEN + self.overhead()
    }

    /// How many chunks a blob of `plain_len` bytes has (an empty blob has one, empty).
    pub fn chunk_count(plain_len: u64) -> u64 {
        plain_len.div_ceil(CHUNK_LEN as u64).max(1)
    }

    /// The stored size of a blob of `plain_len` bytes.
    pub fn sealed_len(&self, plain_len: u64) -> u64 {
        Self::sealed_len_of(self.layers(), plain_len)
    }

    /// The stored size of a blob of `plain_len` bytes sealed with `layers` layers, without
    /// its keys (what a copy of the sealed bytes checks).
    pub fn sealed_len_of(layers: usize, plain_len: u64) -> u64 {
        plain_len + Self::chunk_count(plain_len) * (TAG_LEN * layers) as u64
    }

    /// The sealed length of chunk `index` of a blob of `plain_len` bytes (the last one is
    /// shorter).
    fn chunk_sealed_len(&self, plain_len: u64, index: u64) -> usize {
        if index + 1 == Self::chunk_count(plain_len) {
            (plain_len - index * CHUNK_LEN as u64) as usize + self.overhead()
        } else {
            self.sealed_chunk_len()
        }
    }

    /// The plaintext size of a sealed blob of `sealed_len` bytes; `None` if no blob seals to it.
    pub fn plain_len(&self, sealed_len: u64) -> Option<u64> {
        let stride = self.sealed_chunk_len() as u64;
        let overhead = self.overhead() as u64;
        let (full, rest) = (sealed_len / stride, sealed_len % stride);
        let plain = match rest {
            0 if full > 0 => full * CHUNK_LEN as u64,
            r if r >= overhead && (r > overhead || full == 0) => full * CHUNK_LEN as u64 + (r - overhead),
            _ => return None,
        };
        (self.sealed_len(plain) == sealed_len).then_some(plain)
    }

    fn seal_chunk(&self, index: u64, last: bool, buf: &mut BytesMut) {
        for (n, layer) in self.layers.iter().enumerate() {
            let tag = layer
                .key
                .seal_in_place_separate_tag(layer.nonce(index, last), chunk_aad(n), &mut buf[..])
                .expect("AES-GCM seals any chunk of this size");
            buf.extend_from_slice(tag.as_ref());
        }
    }

    /// Opens one sealed chunk in place; returns its plaintext length.
    fn open_chunk(&self, index: u64, last: bool, buf: &mut [u8]) -> Result<usize> {
        let mut len = buf.len();
        for (n, layer) in self.layers.iter().enumerate().rev() {
            len = layer
                .key
                .open_in_place(layer.nonce(index, last), chunk_aad(n), &mut buf[..len])
                .map_err(|_| EnvelopeError::Damaged { chunk: index })?
                .len();
        }
        Ok(len)
    }

    /// Seals a whole blob held in memory (manifests, small values).
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut sealer = self.sealer();
        let mut out = Vec::with_capacity(self.sealed_len(plaintext.len() as u64) as usize);
        let mut chunks = Vec::new();
        sealer.push(plaintext, &mut chunks)?;
        chunks.push(sealer.finish()?);
        for c in chunks {
            out.extend_from_slice(&c);
        }
        Ok(out)
    }

    /// Opens a whole blob held in memory.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        let plain_len = self
            .plain_len(sealed.len() as u64)
            .ok_or(EnvelopeError::Truncated { chunk: sealed.len() as u64 / self.sealed_chunk_len() as u64 })?;
        let (_, mut opener) = self.open_range(plain_len, None)?;
        let mut out = Vec::with_capacity(plain_len as usize);
        let mut parts = Vec::new();
        opener.push(Bytes::copy_from_slice(sealed), &mut parts)?;
        opener.finish()?;
        for p in parts {
            out.extend_from_slice(&p);
        }
        Ok(out)
    }

    /// A sealer for a new blob.
    pub fn sealer(&self) -> Sealer {
        self.resume_sealer(0, &[]).expect("nothing pending")
    }

    /// A sealer that continues an upload whose first `next_index` chunks are sealed and stored
    /// and whose `pending` bytes (at most a chunk, as [`Envelope::open_staged`] returns them) are not.
    pub fn resume_sealer(&self, next_index: u64, pending: &[u8]) -> Result<Sealer> {
        if pending.len() > CHUNK_LEN {
            return Err(EnvelopeError::StagedDamaged);
        }
        // The first chunk gets a buffer of its own (most values sealed are one chunk); arenas
        // come with the second.
        let mut buf = BytesMut::with_capacity(self.sealed_chunk_len());
        buf.extend_from_slice(pending);
        Ok(Sealer { envelope: self.clone(), next_index, pending: buf, spares: Vec::new() })
    }

    /// Where the sealed bytes of the inclusive plaintext `range` (the whole blob if `None`) of a
    /// blob of `plain_len` bytes lie, and an opener that turns exactly those bytes into exactly
    /// that range.
    pub fn open_range(&self, plain_len: u64, range: Option<(u64, u64)>) -> Result<(SealedSpan, Opener)> {
        let total = Self::chunk_count(plain_len);
        if total > MAX_CHUNKS {
            return Err(EnvelopeError::TooLarge(plain_len));
        }
        let (start, count) = match range {
            None => (0, plain_len),
            Some((start, end)) if start <= end && end < plain_len => (start, end - start + 1),
            Some((start, end)) => return Err(EnvelopeError::Range { start, end, len: plain_len }),
        };
        let chunk = CHUNK_LEN as u64;
        let first = start / chunk;
        let last = if count == 0 { first } else { (start + count - 1) / chunk };
        let stride = self.sealed_chunk_len() as u64;
        let span = SealedSpan { start: first * stride, end: ((last + 1) * stride).min(self.sealed_len(plain_len)) - 1 };
        let opener = Opener {
            envelope: self.clone(),
            plain_len,
            index: first,
            last_index: last,
            skip: (start - first * chunk) as usize,
            remaining: count,
            buf: BytesMut::new(),
        };
        Ok((span, opener))
    }

    /// Seals the plaintext an upload holds past its last whole chunk, to be kept until its next
    /// request: a fresh random nonce each time, bound to `context` (the upload's identity) and
    /// to the chunk index the bytes will become.
    pub fn seal_staged(&self, context: &[u8], index: u64, pending: &[u8]) -> Vec<u8> {
        self.seal_under_staged_key(pending, |n| staged_aad(context, index, n))
    }

    /// Opens what [`Envelope::seal_staged`] sealed for the same `context` and `index`.
    pub fn open_staged(&self, context: &[u8], index: u64, sealed: &[u8]) -> Result<Vec<u8>> {
        let buf = self
            .open_under_staged_key(sealed, |n| staged_aad(context, index, n))
            .map_err(|()| EnvelopeError::StagedDamaged)?;
        if buf.len() > CHUNK_LEN {
            return Err(EnvelopeError::StagedDamaged);
        }
        Ok(buf)
    }

    /// Seals a small value that goes with the blob these keys seal (a manifest's annotations,
    /// kept apart from it for listings) in one piece, as staged chunks are: under the key
    /// derived for them, a fresh random nonce, bound to `context` (and apart from staged
    /// chunks, whatever their context).
    pub fn seal_value(&self, context: &[u8], value: &[u8]) -> Vec<u8> {
        self.seal_under_staged_key(value, |n| value_aad(context, n))
    }

    /// Opens what [`Envelope::seal_value`] sealed for the same `context`.
    pub fn open_value(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        self.open_under_staged_key(sealed, |n| value_aad(context, n)).map_err(|()| EnvelopeError::ValueDamaged)
    }

    fn seal_under_staged_key(&self, plaintext: &[u8], aad: impl Fn(usize) -> Vec<u8>) -> Vec<u8> {
        let mut buf = plaintext.to_vec();
        let mut nonces = Vec::with_capacity(self.layers.len() * NONCE_LEN);
        for (n, layer) in self.layers.iter().enumerate() {
            let nonce: [u8; NONCE_LEN] = random();
            layer
                .staged
                .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad(n)), &mut buf)
                .expect("AES-GCM seals a chunk");
            nonces.extend_from_slice(&nonce);
        }
        nonces.extend_from_slice(&buf);
        nonces
    }

    fn open_under_staged_key(&self, sealed: &[u8], aad: impl Fn(usize) -> Vec<u8>) -> std::result::Result<Vec<u8>, ()> {
        let layers = self.layers.len();
        if sealed.len() < layers * (NONCE_LEN + TAG_LEN) {
            return Err(());
        }
        let (nonces, body) = sealed.split_at(layers * NONCE_LEN);
        let mut buf = body.to_vec();
        let mut len = buf.len();
        for (n, layer) in self.layers.iter().enumerate().rev() {
            let nonce =
                Nonce::try_assume_unique_for_key(&nonces[n * NONCE_LEN..(n + 1) * NONCE_LEN]).map_err(|_| ())?;
            len = layer.staged.open_in_place(nonce, Aad::from(aad(n)), &mut buf[..len]).map_err(|_| ())?.len();
        }
        buf.truncate(len);
        Ok(buf)
    }
}

/// Seals a blob as its plaintext streams in. A full chunk is sealed only once a byte past it
/// arrives (or [`Sealer::finish`] says there is none), so that the last chunk is marked.
pub struct Sealer {
    envelope: Envelope,
    next_index: u64,
    /// The plaintext of the chunk being filled, at the front of an arena's free room (a
    /// sealed chunk's worth at least, so it is sealed where it lies).
    pending: BytesMut,
    /// Arenas filled before, kept to be reused once every chunk cut from them is dropped.
    spares: Vec<BytesMut>,
}

/// Sealed chunks are cut from arenas of this many chunks, reused once the chunks cut from
/// them are dropped (written): a fresh allocation for every chunk cost the upload path page
/// faults and page zeroing (3 % of its CPU, more than half of what sealing adds besides the
/// cipher).
const ARENA_CHUNKS: usize = 8;
/// Arenas a sealer keeps for reuse: the chunks of the last few are still being written.
const SPARE_ARENAS: usize = 3;

impl Sealer {
    /// Takes `data`; every chunk it completes is appended to `out`, sealed.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Bytes>) -> Result<()> {
        while !data.is_empty() {
            if self.pending.len() == CHUNK_LEN {
                out.push(self.seal_pending(false)?);
            }
            let take = (CHUNK_LEN - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    fn seal_pending(&mut self, last: bool) -> Result<Bytes> {
        if self.next_index >= MAX_CHUNKS {
            return Err(EnvelopeError::TooLarge(self.position()));
        }
        // The tags go into the arena's room after the plaintext: no reallocation.
        self.envelope.seal_chunk(self.next_index, last, &mut self.pending);
        self.next_index += 1;
        let sealed = self.pending.split().freeze();
        if !last {
            self.make_room();
        }
        Ok(sealed)
    }

    /// Room for the next sealed chunk (nothing is pending): the rest of the current arena, a
    /// spare arena whose chunks are all dropped, or a new arena.
    fn make_room(&mut self) {
        let need = self.envelope.sealed_chunk_len();
        if self.pending.capacity() >= need {
            return;
        }
        let arena_len = ARENA_CHUNKS * need;
        let room = match self.spares.iter_mut().position(|a| a.try_reclaim(arena_len)) {
            Some(i) => self.spares.swap_remove(i),
            None => BytesMut::with_capacity(arena_len),
        };
        // The used-up arena's handle stays, to reclaim it once its chunks are written.
        let used = std::mem::replace(&mut self.pending, room);
        if self.spares.len() >= SPARE_ARENAS {
            self.spares.remove(0);
        }
        self.spares.push(used);
    }

    /// Seals what is pending as the blob's last chunk.
    pub fn finish(mut self) -> Result<Bytes> {
        self.seal_pending(true)
    }

    /// How many chunks are sealed: the stored session holds `next_index × sealed_chunk_len` bytes.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// The plaintext taken but not yet sealed (at most a chunk).
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Plaintext bytes taken so far.
    pub fn position(&self) -> u64 {
        self.next_index * CHUNK_LEN as u64 + self.pending.len() as u64
    }

    /// What is pending, sealed to be kept between requests (see [`Envelope::seal_staged`]).
    pub fn stage(&self, context: &[u8]) -> Vec<u8> {
        self.envelope.seal_staged(context, self.next_index, &self.pending)
    }
}

/// Opens the sealed bytes of a [`SealedSpan`] as they stream in, giving out exactly the range
/// asked for. Three steps, which a caller may also run apart: [`Opener::frame`] cuts the
/// incoming bytes into runs of whole sealed chunks (no cryptography); [`SealedRun::open`]
/// opens a run in place, on any thread, while the next is framed or read; [`Opener::trim`]
/// gives out the opened runs' plaintext, in order, within the range.
pub struct Opener {
    envelope: Envelope,
    plain_len: u64,
    /// The chunk the next sealed bytes belong to, and the last one to open.
    index: u64,
    last_index: u64,
    /// Plaintext to drop from the front of the next chunk opened.
    skip: usize,
    /// Plaintext still to give out.
    remaining: u64,
    buf: BytesMut,
}

/// Consecutive whole sealed chunks of a blob, cut by [`Opener::frame`], not yet opened: in
/// one or more buffers (the bytes of a read, where they lie), each holding whole chunks.
pub struct SealedRun {
    envelope: Envelope,
    plain_len: u64,
    first_index: u64,
    parts: Vec<BytesMut>,
}

impl SealedRun {
    /// The plaintext of each chunk of the run, opened where it lies (slices of the run's
    /// buffers); an error if any chunk was damaged, moved or sealed under other keys.
    pub fn open(self) -> Result<Vec<Bytes>> {
        let count = Envelope::chunk_count(self.plain_len);
        let mut pieces = Vec::new();
        let mut index = self.first_index;
        for mut part in self.parts {
            let mut spans = Vec::new();
            let mut at = 0usize;
            while at < part.len() {
                let last = index + 1 == count;
                let sealed = self.envelope.chunk_sealed_len(self.plain_len, index);
                let len = self.envelope.open_chunk(index, last, &mut part[at..at + sealed])?;
                spans.push((at, len));
                at += sealed;
                index += 1;
            }
            let plain = part.freeze();
            pieces.extend(spans.into_iter().map(|(at, len)| plain.slice(at..at + len)));
        }
        Ok(pieces)
    }
}

impl Opener {
    /// The sealed length of chunk `index`.
    fn sealed_len_of(&self, index: u64) -> usize {
        self.envelope.chunk_sealed_len(self.plain_len, index)
    }

    /// Takes sealed bytes; the run of whole chunks they complete, if any, goes to `out`, still
    /// sealed. The bytes stay where they lie: only a chunk split between two reads is copied,
    /// into a buffer of its own, so a read that hands over a buffer it no longer needs (as the
    /// stores do) is opened in that buffer.
    pub fn frame(&mut self, mut data: Bytes, out: &mut Vec<SealedRun>) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.index > self.last_index {
            return Err(EnvelopeError::TrailingBytes);
        }
        let first = self.index;
        let mut parts = Vec::new();
        if !self.buf.is_empty() {
            // Complete the chunk the last read began.
            let need = self.sealed_len_of(self.index) - self.buf.len();
            let take = need.min(data.len());
            if self.buf.capacity() < self.buf.len() + need {
                let mut whole = BytesMut::with_capacity(self.buf.len() + need);
                whole.extend_from_slice(&self.buf);
                self.buf = whole;
            }
            self.buf.extend_from_slice(&data[..take]);
            bytes::Buf::advance(&mut data, take);
            if take < need {
                return Ok(());
            }
            parts.push(std::mem::take(&mut self.buf));
            self.index += 1;
            if !data.is_empty() && self.index > self.last_index {
                return Err(EnvelopeError::TrailingBytes);
            }
        }
        if !data.is_empty() {
            let mut rest = data.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
            let mut whole = 0usize;
            while self.index <= self.last_index {
                let need = self.sealed_len_of(self.index);
                if rest.len() - whole < need {
                    break;
                }
                whole += need;
                self.index += 1;
            }
            if self.index > self.last_index && rest.len() > whole {
                return Err(EnvelopeError::TrailingBytes);
            }
            if whole > 0 {
                parts.push(rest.split_to(whole));
            }
            // What remains begins the next chunk.
            self.buf = rest;
        }
        if !parts.is_empty() {
            out.push(SealedRun {
                envelope: self.envelope.clone(),
                plain_len: self.plain_len,
                first_index: first,
                parts,
            });
        }
        Ok(())
    }

    /// The plaintext of opened runs, given back in the order they were framed: what of it
    /// lies within the range, in order.
    pub fn trim(&mut self, plain: Vec<Bytes>, out: &mut Vec<Bytes>) {
        for mut piece in plain {
            if self.skip > 0 {
                let drop = self.skip.min(piece.len());
                piece = piece.slice(drop..);
                self.skip -= drop;
            }
            let take = (piece.len() as u64).min(self.remaining) as usize;
            self.remaining -= take as u64;
            if take > 0 {
                out.push(piece.slice(..take));
            }
        }
    }

    /// Takes sealed bytes; the plaintext of every chunk they complete goes to `out`: the three
    /// steps in one.
    pub fn push(&mut self, data: Bytes, out: &mut Vec<Bytes>) -> Result<()> {
        let mut runs = Vec::new();
        self.frame(data, &mut runs)?;
        for run in runs {
            let plain = run.open()?;
            self.trim(plain, out);
        }
        Ok(())
    }

    /// Ends the read: an error if the sealed bytes stopped before the range's last chunk.
    pub fn finish(&self) -> Result<()> {
        if self.index <= self.last_index {
            return Err(EnvelopeError::Truncated { chunk: self.index });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
