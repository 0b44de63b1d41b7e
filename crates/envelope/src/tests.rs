use proptest::prelude::*;

use super::*;

fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Seals `plain`, fed to the sealer in pieces of the given sizes (cycled).
fn seal_in_pieces(env: &Envelope, plain: &[u8], pieces: &[usize]) -> Vec<u8> {
    let mut sealer = env.sealer();
    let mut chunks = Vec::new();
    let mut at = 0;
    let mut sizes = pieces.iter().cycle();
    while at < plain.len() {
        let n = (*sizes.next().unwrap()).max(1).min(plain.len() - at);
        sealer.push(&plain[at..at + n], &mut chunks).unwrap();
        at += n;
    }
    chunks.push(sealer.finish().unwrap());
    chunks.concat()
}

/// Opens the span of `sealed` for `range`, fed to the opener in pieces of `piece` bytes.
fn open_range(
    env: &Envelope,
    sealed: &[u8],
    plain_len: u64,
    range: Option<(u64, u64)>,
    piece: usize,
) -> Result<Vec<u8>> {
    let (span, mut opener) = env.open_range(plain_len, range)?;
    let bytes = &sealed[span.start as usize..=(span.end as usize).min(sealed.len().saturating_sub(1))];
    let mut out = Vec::new();
    for p in bytes.chunks(piece.max(1)) {
        opener.push(Bytes::copy_from_slice(p), &mut out)?;
    }
    opener.finish()?;
    Ok(out.concat())
}

const LENGTHS: [usize; 9] =
    [0, 1, 100, CHUNK_LEN - 1, CHUNK_LEN, CHUNK_LEN + 1, 2 * CHUNK_LEN, 3 * CHUNK_LEN + 5, 5 * CHUNK_LEN];

#[test]
fn whole_blobs_round_trip_with_one_and_two_layers() {
    for layers in [1, 2] {
        let env = BlobKeys::generate(layers).envelope();
        for len in LENGTHS {
            let plain = blob(len, 7);
            let sealed = env.seal(&plain).unwrap();
            assert_eq!(sealed.len() as u64, env.sealed_len(len as u64), "{layers} layers, {len} bytes");
            assert_eq!(env.plain_len(sealed.len() as u64), Some(len as u64));
            assert_eq!(env.open(&sealed).unwrap(), plain, "{layers} layers, {len} bytes");
            if len > 16 {
                assert!(!sealed.windows(16).any(|w| w == &plain[..16]), "no plaintext in the sealed bytes");
            }
        }
    }
}

#[test]
fn sizes_that_no_blob_seals_to_have_no_plaintext_size() {
    let env = BlobKeys::generate(1).envelope();
    let stride = env.sealed_chunk_len() as u64;
    for bad in [0, 1, 15, stride + 1, stride + 16, 2 * stride + 3] {
        assert_eq!(env.plain_len(bad), None, "{bad}");
    }
    assert_eq!(env.plain_len(16), Some(0));
    assert_eq!(env.plain_len(stride), Some(CHUNK_LEN as u64));
    assert_eq!(env.plain_len(stride + 17), Some(CHUNK_LEN as u64 + 1));
    let two = BlobKeys::generate(2).envelope();
    assert_eq!(two.sealed_len(0), 32);
    assert_eq!(two.sealed_len(CHUNK_LEN as u64 + 1), CHUNK_LEN as u64 + 1 + 64);
}

#[test]
fn a_flipped_bit_anywhere_is_detected() {
    let env = BlobKeys::generate(1).envelope();
    let plain = blob(3 * CHUNK_LEN + 5, 1);
    let sealed = env.seal(&plain).unwrap();
    for at in [0, 1, CHUNK_LEN, CHUNK_LEN + 15, CHUNK_LEN + 16, 2 * (CHUNK_LEN + 16) + 3, sealed.len() - 1] {
        let mut bad = sealed.clone();
        bad[at] ^= 0x10;
        let chunk = (at / env.sealed_chunk_len()) as u64;
        assert_eq!(env.open(&bad), Err(EnvelopeError::Damaged { chunk }), "bit flipped at {at}");
    }
}

#[test]
fn truncation_is_detected_even_at_a_chunk_boundary() {
    let env = BlobKeys::generate(1).envelope();
    let plain = blob(3 * CHUNK_LEN, 2);
    let sealed = env.seal(&plain).unwrap();
    let stride = env.sealed_chunk_len();
    // Cut inside the last chunk: the read ends early.
    assert_eq!(
        open_range(&env, &sealed[..sealed.len() - 10], plain.len() as u64, None, 4096),
        Err(EnvelopeError::Truncated { chunk: 2 })
    );
    // Cut after two whole chunks, and the size believed to be two chunks: chunk 1 was not sealed
    // as the last one.
    assert_eq!(
        open_range(&env, &sealed[..2 * stride], 2 * CHUNK_LEN as u64, None, 4096),
        Err(EnvelopeError::Damaged { chunk: 1 })
    );
    assert!(env.open(&sealed[..2 * stride]).is_err());
}

#[test]
fn swapped_or_repeated_chunks_and_trailing_bytes_are_detected() {
    let env = BlobKeys::generate(2).envelope();
    let plain = blob(3 * CHUNK_LEN + 1, 3);
    let sealed = env.seal(&plain).unwrap();
    let stride = env.sealed_chunk_len();
    let mut swapped = sealed.clone();
    swapped[..stride].copy_from_slice(&sealed[stride..2 * stride]);
    swapped[stride..2 * stride].copy_from_slice(&sealed[..stride]);
    assert_eq!(env.open(&swapped), Err(EnvelopeError::Damaged { chunk: 0 }));
    let mut repeated = sealed.clone();
    repeated[stride..2 * stride].copy_from_slice(&sealed[..stride]);
    assert_eq!(env.open(&repeated), Err(EnvelopeError::Damaged { chunk: 1 }));
    let (_, mut opener) = env.open_range(plain.len() as u64, None).unwrap();
    let mut longer = sealed.clone();
    longer.push(0);
    assert_eq!(opener.push(Bytes::from(longer), &mut Vec::new()), Err(EnvelopeError::TrailingBytes));
}

#[test]
fn a_wrong_key_or_one_layer_of_two_does_not_open() {
    let keys = BlobKeys::generate(2);
    let plain = blob(CHUNK_LEN + 9, 4);
    let sealed = keys.envelope().seal(&plain).unwrap();
    let other = BlobKeys::generate(2).envelope();
    assert_eq!(
        open_range(&other, &sealed, plain.len() as u64, None, 1 << 20),
        Err(EnvelopeError::Damaged { chunk: 0 })
    );
    // The first layer's key alone opens nothing.
    let first = BlobKeys::from_bytes(&keys.to_bytes()[..LAYER_KEY_LEN]).unwrap().envelope();
    assert!(first.open(&sealed).is_err());
    // Each layer is sealed with its own key: the two layers swapped do not open either.
    let bytes = keys.to_bytes();
    let swapped = [&bytes[LAYER_KEY_LEN..], &bytes[..LAYER_KEY_LEN]].concat();
    assert!(BlobKeys::from_bytes(&swapped).unwrap().envelope().open(&sealed).is_err());
}

#[test]
fn blob_keys_round_trip_and_bad_lengths_are_refused() {
    for layers in [1, 2] {
        let keys = BlobKeys::generate(layers);
        let again = BlobKeys::from_bytes(&keys.to_bytes()).unwrap();
        assert_eq!(again, keys);
        assert_eq!(again.layers(), layers);
        assert_eq!(format!("{keys:?}"), format!("BlobKeys({layers} layers)"));
    }
    for bad in [0, 1, LAYER_KEY_LEN - 1, LAYER_KEY_LEN + 1, 3 * LAYER_KEY_LEN] {
        assert_eq!(BlobKeys::from_bytes(&vec![0; bad]), Err(EnvelopeError::KeyLength(bad)));
    }
    assert_ne!(BlobKeys::generate(1), BlobKeys::generate(1));
}

#[test]
fn ranges_outside_the_blob_are_refused() {
    let env = BlobKeys::generate(1).envelope();
    assert!(matches!(env.open_range(10, Some((5, 10))), Err(EnvelopeError::Range { .. })));
    assert!(matches!(env.open_range(10, Some((6, 5))), Err(EnvelopeError::Range { .. })));
    assert!(matches!(env.open_range(0, Some((0, 0))), Err(EnvelopeError::Range { .. })));
}

#[test]
fn a_range_reads_only_the_chunks_it_touches() {
    let env = BlobKeys::generate(1).envelope();
    let stride = env.sealed_chunk_len() as u64;
    let len = 10 * CHUNK_LEN as u64 + 100;
    let c = CHUNK_LEN as u64;
    let (span, _) = env.open_range(len, Some((c + 1, 2 * c))).unwrap();
    assert_eq!(span, SealedSpan { start: stride, end: 3 * stride - 1 });
    let (span, _) = env.open_range(len, Some((10 * c, 10 * c + 99))).unwrap();
    assert_eq!(span, SealedSpan { start: 10 * stride, end: env.sealed_len(len) - 1 });
    let (span, _) = env.open_range(len, Some((0, 0))).unwrap();
    assert_eq!(span, SealedSpan { start: 0, end: stride - 1 });
}

#[test]
fn an_upload_resumed_from_its_staged_part_seals_the_same_format() {
    let keys = BlobKeys::generate(2);
    let env = keys.envelope();
    let plain = blob(2 * CHUNK_LEN + 777, 5);
    let mut stored: Vec<u8> = Vec::new();
    let mut staged: (u64, Vec<u8>) = (0, env.seal_staged(b"upload-1", 0, &[]));
    // Requests of odd sizes, each resumed from what the last one left staged.
    for piece in plain.chunks(40_001) {
        let pending = env.open_staged(b"upload-1", staged.0, &staged.1).unwrap();
        let mut sealer = env.resume_sealer(staged.0, &pending).unwrap();
        let mut out = Vec::new();
        sealer.push(piece, &mut out).unwrap();
        for c in out {
            stored.extend_from_slice(&c);
        }
        assert_eq!(stored.len() as u64, sealer.next_index() * env.sealed_chunk_len() as u64);
        staged = (sealer.next_index(), sealer.stage(b"upload-1"));
        assert!(!staged.1.windows(12).any(|w| w == &piece[piece.len() - 12..]), "the staged part is sealed");
    }
    let pending = env.open_staged(b"upload-1", staged.0, &staged.1).unwrap();
    let sealer = env.resume_sealer(staged.0, &pending).unwrap();
    assert_eq!(sealer.position(), plain.len() as u64);
    stored.extend_from_slice(&sealer.finish().unwrap());
    assert_eq!(env.open(&stored).unwrap(), plain);
    // Staged bytes open only for the same upload and chunk index, and only once intact.
    assert_eq!(env.open_staged(b"upload-2", staged.0, &staged.1), Err(EnvelopeError::StagedDamaged));
    assert_eq!(env.open_staged(b"upload-1", staged.0 + 1, &staged.1), Err(EnvelopeError::StagedDamaged));
    let mut bad = staged.1.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(env.open_staged(b"upload-1", staged.0, &bad), Err(EnvelopeError::StagedDamaged));
    assert_ne!(env.seal_staged(b"u", 0, b"same"), env.seal_staged(b"u", 0, b"same"), "a fresh nonce each time");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every range of a random blob, sealed in random pieces and read in random pieces, opens
    /// to exactly that range of the plaintext.
    #[test]
    fn every_range_opens_to_the_plaintext(
        len in 0usize..(4 * CHUNK_LEN + 300),
        layers in 1usize..=2,
        seed in any::<u8>(),
        pieces in prop::collection::vec(1usize..100_000, 1..5),
        read_piece in 1usize..200_000,
        a in any::<u64>(),
        b in any::<u64>(),
    ) {
        let env = BlobKeys::generate(layers).envelope();
        let plain = blob(len, seed);
        let sealed = seal_in_pieces(&env, &plain, &pieces);
        prop_assert_eq!(sealed.len() as u64, env.sealed_len(len as u64));
        prop_assert_eq!(&open_range(&env, &sealed, len as u64, None, read_piece).unwrap(), &plain);
        if len > 0 {
            let (x, y) = (a % len as u64, b % len as u64);
            let (start, end) = (x.min(y), x.max(y));
            let got = open_range(&env, &sealed, len as u64, Some((start, end)), read_piece).unwrap();
            prop_assert_eq!(&got[..], &plain[start as usize..=end as usize]);
        }
    }

    /// Any single flipped bit makes the read of a range that covers it fail.
    #[test]
    fn any_flipped_bit_is_detected(len in 1usize..(3 * CHUNK_LEN), at in any::<usize>(), bit in 0u8..8) {
        let env = BlobKeys::generate(1).envelope();
        let plain = blob(len, 9);
        let mut sealed = env.seal(&plain).unwrap();
        let at = at % sealed.len();
        sealed[at] ^= 1 << bit;
        prop_assert!(env.open(&sealed).is_err());
    }
}

#[test]
fn a_value_opens_only_with_its_keys_and_context_and_never_as_a_staged_chunk() {
    for layers in [1, 2] {
        let keys = BlobKeys::generate(layers);
        let env = keys.envelope();
        let value = blob(200_000, 7);
        let sealed = env.seal_value(b"annotations\nrepo@sha256:ab", &value);
        assert_eq!(env.open_value(b"annotations\nrepo@sha256:ab", &sealed).unwrap(), value, "larger than a chunk");
        assert_ne!(sealed, env.seal_value(b"annotations\nrepo@sha256:ab", &value), "a fresh nonce each time");
        assert_eq!(env.open_value(b"annotations\nother@sha256:ab", &sealed), Err(EnvelopeError::ValueDamaged));
        assert!(BlobKeys::generate(layers).envelope().open_value(b"annotations\nrepo@sha256:ab", &sealed).is_err());
        let small = env.seal_value(b"ctx", b"{}");
        assert!(env.open_staged(b"ctx", 0, &small).is_err(), "a value is not a staged chunk");
        let mut flipped = small.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(env.open_value(b"ctx", &flipped).is_err());
    }
}

#[test]
fn chunks_cut_from_reused_arenas_stay_intact() {
    // More chunks than several arenas hold: sealed chunks dropped as soon as they are made
    // (their arena is reclaimed and written over) and kept (new arenas), for one and two
    // layers; every chunk kept must still be what was sealed.
    for layers in [1, 2] {
        let env = BlobKeys::generate(layers).envelope();
        let plain = blob(3 * ARENA_CHUNKS * CHUNK_LEN + 12_345, 3);
        let mut sealer = env.sealer();
        let (mut kept, mut copied) = (Vec::new(), Vec::new());
        for (i, piece) in plain.chunks(40_000).enumerate() {
            let mut out = Vec::new();
            sealer.push(piece, &mut out).unwrap();
            for c in out {
                copied.extend_from_slice(&c);
                if i % 3 == 0 {
                    kept.push(c); // held, as a store still writing it would
                }
            }
        }
        let last = sealer.finish().unwrap();
        copied.extend_from_slice(&last);
        assert_eq!(env.open(&copied).unwrap(), plain, "{layers} layers");
        let stride = env.sealed_chunk_len();
        for c in &kept {
            assert!(copied.chunks(stride).any(|s| s == &c[..]), "a kept chunk was written over");
        }
    }
}

#[test]
fn reads_of_any_size_open_in_their_own_buffers() {
    // Reads handed over as buffers of their own (zero-copy framing) and cut anywhere: the
    // chunk split between two reads is the only one gathered.
    let env = BlobKeys::generate(1).envelope();
    let plain = blob(20 * CHUNK_LEN + 999, 5);
    let sealed = env.seal(&plain).unwrap();
    for read in [1, 1000, CHUNK_LEN, env.sealed_chunk_len(), 3 * env.sealed_chunk_len() + 1, 1 << 20] {
        let (_, mut opener) = env.open_range(plain.len() as u64, None).unwrap();
        let mut out = Vec::new();
        for p in sealed.chunks(read) {
            opener.push(Bytes::from(p.to_vec()), &mut out).unwrap();
        }
        opener.finish().unwrap();
        assert_eq!(out.concat(), plain, "reads of {read} bytes");
        let (_, mut opener) = env.open_range(plain.len() as u64, Some((70_000, 900_000))).unwrap();
        let span = env.open_range(plain.len() as u64, Some((70_000, 900_000))).unwrap().0;
        let mut out = Vec::new();
        for p in sealed[span.start as usize..=span.end as usize].chunks(read) {
            opener.push(Bytes::from(p.to_vec()), &mut out).unwrap();
        }
        opener.finish().unwrap();
        assert_eq!(out.concat(), &plain[70_000..=900_000], "a range, reads of {read} bytes");
    }
}
