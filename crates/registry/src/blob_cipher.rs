//! Berth's at-rest format (`berth-envelope`) over byte streams, as the blob paths use it: a
//! plaintext stream sealed chunk by chunk as it arrives (the sealer carried from one request
//! of a chunked upload to the next), and a sealed range opened as it is read, giving out
//! exactly the plaintext range asked for. Nothing here buffers more than a chunk.

use std::sync::{Arc, Mutex};

use berth_envelope::{EnvelopeError, Opener, Sealer};
use berth_store::ByteStream;
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream;

fn io_error(e: EnvelopeError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// `input` passed through `step` (a sealer's or an opener's push), the output of each item
/// given out in order. The first error — of `input` or of `step` — is the last item: the
/// state is dropped then, so nothing after a failure is processed, and the caller's
/// end-of-stream step finds no state to finish.
fn through<T: Send + 'static, O: Send + 'static>(
    input: ByteStream,
    state: Arc<Mutex<Option<T>>>,
    step: impl Fn(&mut T, Bytes, &mut Vec<O>) -> Result<(), EnvelopeError> + Send + 'static,
) -> impl futures_util::Stream<Item = std::io::Result<O>> + Send {
    input
        .scan((), move |_, item| {
            let mut guard = state.lock().expect("cipher state lock");
            let items = match (guard.as_mut(), item) {
                (None, _) => None,
                (Some(s), Ok(data)) => {
                    let mut out = Vec::new();
                    Some(match step(s, data, &mut out) {
                        Ok(()) => out.into_iter().map(Ok).collect::<Vec<_>>(),
                        Err(e) => vec![Err(io_error(e))],
                    })
                }
                (Some(_), Err(e)) => Some(vec![Err(e)]),
            };
            if items.as_ref().is_some_and(|items| items.iter().any(|i| i.is_err())) {
                *guard = None;
            }
            futures_util::future::ready(items.map(stream::iter))
        })
        .flatten()
}

/// Where a sealing stream leaves its sealer once its input ends: the chunked-upload request
/// that fed it takes the sealer back (to stage what is pending, or to finish the blob).
pub type SealerSlot = Arc<Mutex<Option<Sealer>>>;

/// `body` sealed by `sealer`: every whole chunk the plaintext completes, sealed, in order. The
/// plaintext past the last whole chunk stays pending in the sealer, which is put in the
/// returned slot when `body` ends; with `finish`, the stream ends with the blob's last chunk
/// instead and the slot stays empty. The first error (of `body`, or of sealing) ends the
/// stream: the sealer is dropped, so nothing after a failure is ever sealed or finished, and
/// an empty slot after a stream without `finish` means it failed.
pub fn sealing(body: ByteStream, sealer: Sealer, finish: bool) -> (ByteStream, SealerSlot) {
    let slot: SealerSlot = Arc::new(Mutex::new(None));
    let state = Arc::new(Mutex::new(Some(sealer)));
    let sealed_chunks = through(body, state.clone(), |sealer, plain, out| sealer.push(&plain, out));
    let end = {
        let slot = slot.clone();
        stream::once(async move {
            match state.lock().expect("sealer lock").take() {
                Some(s) if finish => Some(s.finish().map_err(io_error)),
                Some(s) => {
                    *slot.lock().expect("sealer slot") = Some(s);
                    None
                }
                // The stream failed: its error was the last item.
                None => None,
            }
        })
        .filter_map(|last| async move { last })
    };
    (Box::pin(sealed_chunks.chain(end)), slot)
}

/// Opened runs (about one store read each: 1 MiB on the filesystem) held ready ahead of the
/// reader.
const RUNS_READY: usize = 2;

/// The plaintext of the sealed bytes `sealed` (exactly the span `opener` was made for, see
/// `Envelope::open_range`), and an error — never unauthenticated bytes — if anything was
/// damaged, reordered or cut short; the first error ends the stream.
///
/// A task of its own reads the sealed bytes, cuts them into runs of whole chunks as they
/// arrive and opens each, up to `RUNS_READY` runs ahead of the reader (it stops when the
/// reader drops the stream): reading and opening go on while the response is written, on the
/// other core, instead of only when the connection asks for more. A run is opened in that
/// task (about 0.17 ms for 1 MiB on one core here), not handed to the blocking pool: on
/// this 2-core machine the thread hop per run cost more than it overlapped.
pub fn opening(sealed: ByteStream, opener: Opener) -> ByteStream {
    let state = Arc::new(Mutex::new(Some(opener)));
    let runs = through(sealed, state.clone(), |opener, data, out| opener.frame(data, out));
    let opened = runs.map(|run| run.and_then(|run| run.open().map_err(io_error)));
    let trimmer = state.clone();
    let plain = opened.scan(false, move |failed, item| {
        if *failed {
            return futures_util::future::ready(None);
        }
        let items = match item {
            Ok(pieces) => match trimmer.lock().expect("opener lock").as_mut() {
                Some(opener) => {
                    let mut out = Vec::new();
                    opener.trim(pieces, &mut out);
                    out.into_iter().map(Ok).collect::<Vec<_>>()
                }
                None => Vec::new(),
            },
            Err(e) => {
                // Nothing after a failure is given out, and the end finds no state to finish.
                *failed = true;
                *trimmer.lock().expect("opener lock") = None;
                vec![Err(e)]
            }
        };
        futures_util::future::ready(Some(items))
    });
    let end = stream::once(async move {
        match state.lock().expect("opener lock").take() {
            Some(opener) => opener.finish().err().map(|e| vec![Err(io_error(e))]),
            None => None,
        }
    })
    .filter_map(|r| async move { r });
    let mut batches = Box::pin(plain.chain(end));
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<std::io::Result<Bytes>>>(RUNS_READY);
    tokio::spawn(async move {
        while let Some(batch) = batches.next().await {
            if tx.send(batch).await.is_err() {
                return; // the reader is gone
            }
        }
    });
    Box::pin(stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) }).map(stream::iter).flatten())
}

#[cfg(test)]
mod tests {
    use berth_envelope::Envelope;

    use super::*;

    /// Reads a whole stream into memory: for the tests and for values known to be small.
    async fn collect(mut s: ByteStream) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(b) = s.next().await {
            out.extend_from_slice(&b?);
        }
        Ok(out)
    }

    /// A stream of `data` in pieces of the given sizes (cycled).
    fn pieces(data: &[u8], sizes: &[usize]) -> ByteStream {
        let mut parts = Vec::new();
        let (mut at, mut i) = (0, 0);
        while at < data.len() {
            let n = sizes[i % sizes.len()].clamp(1, data.len() - at);
            parts.push(Ok(Bytes::copy_from_slice(&data[at..at + n])));
            at += n;
            i += 1;
        }
        Box::pin(stream::iter(parts))
    }

    /// An envelope for tests, with fresh keys.
    fn test_envelope(layers: usize) -> Envelope {
        berth_envelope::BlobKeys::generate(layers).envelope()
    }

    /// Deterministic bytes (xorshift), so failures reproduce.
    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    const CHUNK: usize = berth_envelope::CHUNK_LEN;

    #[tokio::test]
    async fn a_blob_sealed_in_several_requests_opens_whole_and_in_every_range() {
        for (len, layers, seed) in [(0, 1, 1), (1, 1, 2), (CHUNK, 1, 3), (CHUNK + 1, 2, 4), (3 * CHUNK + 777, 1, 5)] {
            let plain = bytes(len, seed);
            let envelope = test_envelope(layers);
            // Three requests of odd sizes, the sealer carried between them as an upload does.
            let cut1 = len / 3;
            let cut2 = 2 * len / 3;
            let mut stored = Vec::new();
            let mut sealer = envelope.sealer();
            for (i, part) in [&plain[..cut1], &plain[cut1..cut2], &plain[cut2..]].into_iter().enumerate() {
                let last = i == 2;
                let (sealed, slot) = sealing(pieces(part, &[1000, 7, 65_535]), sealer, last);
                stored.extend(collect(sealed).await.unwrap());
                if last {
                    assert!(slot.lock().unwrap().is_none());
                    break;
                }
                let carried = slot.lock().unwrap().take().expect("the sealer comes back");
                assert_eq!(stored.len() as u64, carried.next_index() * envelope.sealed_chunk_len() as u64);
                // Staged and resumed, as between two requests on different nodes.
                let staged = carried.stage(b"upload-1");
                let pending = envelope.open_staged(b"upload-1", carried.next_index(), &staged).unwrap();
                sealer = envelope.resume_sealer(carried.next_index(), &pending).unwrap();
            }
            assert_eq!(stored.len() as u64, envelope.sealed_len(len as u64), "len {len}");

            let ranges: Vec<Option<(u64, u64)>> = if len == 0 {
                vec![None]
            } else {
                let l = len as u64;
                vec![
                    None,
                    Some((0, 0)),
                    Some((l - 1, l - 1)),
                    Some((0, l - 1)),
                    Some((l / 2, l - 1)),
                    Some((l / 3, l / 2)),
                ]
            };
            for range in ranges {
                let (span, opener) = envelope.open_range(len as u64, range).unwrap();
                let sealed = &stored[span.start as usize..=span.end as usize];
                let opened = collect(opening(pieces(sealed, &[4096, 13, 70_000]), opener)).await.unwrap();
                let (start, end) = range.map_or((0, len), |(s, e)| (s as usize, e as usize + 1));
                assert_eq!(opened, &plain[start..end], "len {len}, range {range:?}");
            }
        }
    }

    #[tokio::test]
    async fn the_first_error_ends_the_stream_and_nothing_after_it_is_sealed() {
        let envelope = test_envelope(1);
        let parts: Vec<std::io::Result<Bytes>> = vec![
            Ok(Bytes::from(vec![1u8; 10])),
            Err(std::io::Error::other("client went away")),
            Ok(Bytes::from(vec![2u8; CHUNK])),
        ];
        let (sealed, slot) = sealing(Box::pin(stream::iter(parts)), envelope.sealer(), false);
        let items: Vec<_> = sealed.collect().await;
        assert_eq!(items.len(), 1, "only the error");
        assert!(items[0].is_err());
        assert!(slot.lock().unwrap().is_none(), "no sealer comes back from a failed request");
        let parts: Vec<std::io::Result<Bytes>> =
            vec![Ok(Bytes::from(vec![1u8; 10])), Err(std::io::Error::other("cut")), Ok(Bytes::from(vec![2u8; 5]))];
        let (sealed, _) = sealing(Box::pin(stream::iter(parts)), envelope.sealer(), true);
        let items: Vec<_> = sealed.collect().await;
        assert!(items.len() == 1 && items[0].is_err(), "no last chunk after a failure");
    }

    #[tokio::test]
    async fn damage_is_an_error_not_bytes() {
        let plain = bytes(2 * CHUNK + 10, 9);
        let envelope = test_envelope(1);
        let (sealed, _) = sealing(pieces(&plain, &[CHUNK]), envelope.sealer(), true);
        let stored = collect(sealed).await.unwrap();
        let open = |data: Vec<u8>| {
            let (_, opener) = envelope.open_range(plain.len() as u64, None).unwrap();
            collect(opening(pieces(&data, &[5000]), opener))
        };
        assert_eq!(open(stored.clone()).await.unwrap(), plain);
        let mut flipped = stored.clone();
        flipped[CHUNK + 100] ^= 1;
        assert!(open(flipped).await.is_err());
        assert!(open(stored[..stored.len() - 1].to_vec()).await.is_err(), "cut short");
        let stride = envelope.sealed_chunk_len();
        let mut swapped = stored.clone();
        swapped[..stride].copy_from_slice(&stored[stride..2 * stride]);
        swapped[stride..2 * stride].copy_from_slice(&stored[..stride]);
        assert!(open(swapped).await.is_err(), "chunks out of order");
        let (_, wrong) = test_envelope(1).open_range(plain.len() as u64, None).unwrap();
        assert!(collect(opening(pieces(&stored, &[5000]), wrong)).await.is_err(), "another blob's keys");
    }
}
