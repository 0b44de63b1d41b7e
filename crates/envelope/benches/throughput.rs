//! One core's rate at sealing and opening a 16 MiB blob in Berth's chunked format, one layer
//! (`AES256`, `KMS`) and two (`KMS_DSSE`): the limit an encrypted download or upload can reach
//! on this machine, besides the copies around it.
//!
//! `cargo bench -p berth-envelope` (divan prints the time per blob and the bytes per second).

use berth_envelope::{BlobKeys, Envelope};
use bytes::Bytes;
use divan::{Bencher, black_box, counter::BytesCount};

fn main() {
    divan::main();
}

const BLOB: usize = 16 << 20;

fn envelope(layers: usize) -> Envelope {
    BlobKeys::generate(layers).envelope()
}

#[divan::bench(args = [1, 2])]
fn seal(bencher: Bencher, layers: usize) {
    let env = envelope(layers);
    let plain = vec![7u8; BLOB];
    bencher.counter(BytesCount::new(BLOB)).bench(|| {
        let mut sealer = env.sealer();
        let mut out = Vec::with_capacity(BLOB / berth_envelope::CHUNK_LEN + 1);
        sealer.push(black_box(&plain), &mut out).unwrap();
        out.push(sealer.finish().unwrap());
        out
    });
}

/// Opening as a download does: the sealed bytes arrive in 512 KiB reads (the filesystem store's).
#[divan::bench(args = [1, 2])]
fn open(bencher: Bencher, layers: usize) {
    let env = envelope(layers);
    let sealed = env.seal(&vec![7u8; BLOB]).unwrap();
    let reads: Vec<Bytes> = sealed.chunks(512 << 10).map(Bytes::copy_from_slice).collect();
    bencher.counter(BytesCount::new(BLOB)).bench(|| {
        let (_, mut opener) = env.open_range(BLOB as u64, None).unwrap();
        let mut out = Vec::with_capacity(BLOB / berth_envelope::CHUNK_LEN + 1);
        for r in &reads {
            opener.push(black_box(r.clone()), &mut out).unwrap();
        }
        opener.finish().unwrap();
        out
    });
}
