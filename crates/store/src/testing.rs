//! The behaviour every [`BlobStore`] implementation must show. Each implementation's tests call
//! [`blob_store_suite`] on a fresh, empty store.

use berth_oci::{Algorithm, ByteRange, Digest};
use bytes::Bytes;
use futures_util::{StreamExt, stream};

use crate::{BlobStore, ByteStream, StoreError};

pub fn bytes_stream(chunks: Vec<&'static [u8]>) -> ByteStream {
    Box::pin(stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))))
}

pub async fn collect(mut s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

pub async fn blob_store_suite(store: &dyn BlobStore) {
    let content = b"hello, blob store";
    let digest = Digest::from_bytes(Algorithm::Sha256, content);
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(matches!(store.read(&digest, None).await, Err(StoreError::NotFound)));
    assert!(store.list().await.unwrap().is_empty());

    // An upload in two appends, committed.
    store.upload_create("u1").await.unwrap();
    assert_eq!(store.upload_size("u1").await.unwrap(), Some(0));
    assert_eq!(store.upload_append("u1", 0, bytes_stream(vec![b"hello, "])).await.unwrap(), 7);
    // Appending at the wrong offset fails and changes nothing.
    assert!(store.upload_append("u1", 3, bytes_stream(vec![b"x"])).await.is_err());
    assert_eq!(store.upload_size("u1").await.unwrap(), Some(7));
    // A refused chunk is cut off again.
    assert_eq!(store.upload_append("u1", 7, bytes_stream(vec![b"refused"])).await.unwrap(), 14);
    store.upload_truncate("u1", 7).await.unwrap();
    assert_eq!(store.upload_size("u1").await.unwrap(), Some(7));
    let n = store.upload_append("u1", 7, bytes_stream(vec![b"blob ", b"store"])).await.unwrap();
    assert_eq!(n, content.len() as u64);
    assert_eq!(collect(store.upload_read("u1").await.unwrap()).await, content);
    // Not visible as a blob before commit.
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert_eq!(store.upload_commit("u1", &digest).await.unwrap(), content.len() as u64);
    assert_eq!(store.upload_size("u1").await.unwrap(), None);
    assert_eq!(store.stat(&digest).await.unwrap(), Some(content.len() as u64));
    assert_eq!(collect(store.read(&digest, None).await.unwrap()).await, content);
    assert_eq!(collect(store.read(&digest, Some(ByteRange { start: 7, end: 10 })).await.unwrap()).await, b"blob");
    assert_eq!(store.list().await.unwrap(), vec![digest.clone()]);

    // Committing the same content again keeps one copy and drops the session.
    store.upload_create("u2").await.unwrap();
    store.upload_append("u2", 0, bytes_stream(vec![content])).await.unwrap();
    store.upload_commit("u2", &digest).await.unwrap();
    assert_eq!(store.upload_size("u2").await.unwrap(), None);
    assert_eq!(store.list().await.unwrap().len(), 1);

    // Sessions can be listed and dropped; an empty session commits an empty blob.
    store.upload_create("u3").await.unwrap();
    assert!(store.upload_list().await.unwrap().iter().any(|(id, _)| id == "u3"));
    assert!(store.upload_create("u3").await.is_err(), "session ids are unique");
    store.upload_delete("u3").await.unwrap();
    store.upload_delete("u3").await.unwrap();
    assert_eq!(store.upload_size("u3").await.unwrap(), None);
    assert!(matches!(store.upload_append("u3", 0, bytes_stream(vec![b"x"])).await, Err(StoreError::NotFound)));
    store.upload_create("u4").await.unwrap();
    let empty = Digest::from_bytes(Algorithm::Sha256, b"");
    assert_eq!(store.upload_commit("u4", &empty).await.unwrap(), 0);
    assert_eq!(collect(store.read(&empty, None).await.unwrap()).await, b"");

    // sha512 blobs live beside sha256 ones.
    let d512 = Digest::from_bytes(Algorithm::Sha512, content);
    store.upload_create("u5").await.unwrap();
    store.upload_append("u5", 0, bytes_stream(vec![content])).await.unwrap();
    store.upload_commit("u5", &d512).await.unwrap();
    assert_eq!(store.stat(&d512).await.unwrap(), Some(content.len() as u64));

    store.delete(&digest).await.unwrap();
    store.delete(&digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert_eq!(store.list().await.unwrap().len(), 2);
}
