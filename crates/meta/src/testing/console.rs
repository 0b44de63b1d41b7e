use super::*;

fn session(id: &str, key: &str, expires_at: i64) -> ConsoleSession {
    ConsoleSession {
        id_hash: id.into(),
        access_key_id: key.into(),
        csrf_token: format!("csrf-{id}"),
        created_at: 1,
        expires_at,
    }
}

pub async fn sessions_are_kept_until_signed_out_expired_or_their_key_goes(meta: Store) {
    let key_a = "AKIAAAAAAAAAAAAAAAAA";
    let key_b = "AKIABBBBBBBBBBBBBBBB";
    for s in [session("s1", key_a, 100), session("s2", key_a, 200), session("s3", key_b, 50)] {
        meta.create_console_session(&s).await.unwrap();
    }
    assert!(matches!(meta.create_console_session(&session("s1", key_b, 9)).await, Err(MetaError::AlreadyExists)));
    assert_eq!(meta.console_session("s1").await.unwrap(), Some(session("s1", key_a, 100)));
    assert_eq!(meta.console_session("nope").await.unwrap(), None);
    assert!(meta.delete_console_session("s1").await.unwrap());
    assert!(!meta.delete_console_session("s1").await.unwrap());
    assert_eq!(meta.delete_expired_console_sessions(60).await.unwrap(), 1);
    assert_eq!(meta.console_session("s3").await.unwrap(), None);
    meta.create_console_session(&session("s4", key_a, 300)).await.unwrap();
    assert_eq!(meta.delete_console_sessions(key_a).await.unwrap(), 2);
    assert_eq!(meta.console_session("s2").await.unwrap(), None);
}

pub async fn failed_sign_ins_are_counted_per_subject(meta: Store) {
    let both = vec!["key:AKIAAAAAAAAAAAAAAAAA".to_string(), "ip:192.0.2.1".to_string()];
    meta.record_console_sign_in_failure(&both, 10, 0).await.unwrap();
    meta.record_console_sign_in_failure(&both[1..], 20, 0).await.unwrap();
    assert_eq!(meta.console_sign_in_failures("ip:192.0.2.1", 0).await.unwrap(), vec![10, 20]);
    assert_eq!(meta.console_sign_in_failures("ip:192.0.2.1", 15).await.unwrap(), vec![20]);
    assert_eq!(meta.console_sign_in_failures("key:AKIAAAAAAAAAAAAAAAAA", 0).await.unwrap(), vec![10]);
    // Old failures are forgotten as new ones arrive.
    meta.record_console_sign_in_failure(&both[..1], 30, 15).await.unwrap();
    assert_eq!(meta.console_sign_in_failures("key:AKIAAAAAAAAAAAAAAAAA", 0).await.unwrap(), vec![30]);
    assert_eq!(meta.console_sign_in_failures("ip:192.0.2.1", 0).await.unwrap(), vec![20]);
}
