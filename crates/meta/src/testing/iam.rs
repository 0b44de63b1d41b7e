use super::*;

const ACCOUNT: &str = "123456789012";

async fn alice_in_devs(meta: &dyn MetaStore) -> (Principal, Group) {
    meta.ensure_account(ACCOUNT).await.unwrap();
    let alice = Principal {
        id: "AIDAALICE".into(),
        account_id: ACCOUNT.into(),
        name: "alice".into(),
        kind: PrincipalKind::User,
        created_at: 3,
    };
    meta.create_principal(&alice).await.unwrap();
    let devs = Group { id: "AGPADEVS".into(), account_id: ACCOUNT.into(), name: "devs".into(), created_at: 4 };
    meta.create_group(&devs).await.unwrap();
    meta.add_group_member(&devs.id, &alice.id).await.unwrap();
    (alice, devs)
}

fn pull_policy() -> ManagedPolicy {
    ManagedPolicy {
        arn: "arn:aws:iam::123456789012:policy/pull".into(),
        id: "ANPAPULL".into(),
        account_id: ACCOUNT.into(),
        name: "pull".into(),
        path: "/".into(),
        document: "{4}".into(),
        created_at: 5,
        updated_at: 5,
    }
}

pub async fn keeps_groups_and_memberships(meta: Store) {
    let (alice, devs) = alice_in_devs(meta.as_ref()).await;
    assert!(matches!(meta.create_group(&devs).await, Err(MetaError::AlreadyExists)));
    assert_eq!(meta.group_by_name(ACCOUNT, "devs").await.unwrap(), Some(devs.clone()));
    assert_eq!(meta.list_groups(ACCOUNT).await.unwrap(), std::slice::from_ref(&devs));
    meta.add_group_member(&devs.id, &alice.id).await.unwrap();
    assert_eq!(meta.groups_of(&alice.id).await.unwrap(), std::slice::from_ref(&devs));
    assert_eq!(meta.group_members(&devs.id).await.unwrap(), std::slice::from_ref(&alice));
    assert!(meta.remove_group_member(&devs.id, &alice.id).await.unwrap());
    assert!(!meta.remove_group_member(&devs.id, &alice.id).await.unwrap());
    assert!(meta.groups_of(&alice.id).await.unwrap().is_empty());
}

pub async fn gathers_every_identity_policy_of_a_principal(meta: Store) {
    let (alice, devs) = alice_in_devs(meta.as_ref()).await;
    meta.put_inline_policy(&alice.id, "own", "{1}").await.unwrap();
    meta.put_inline_policy(&alice.id, "own", "{2}").await.unwrap();
    meta.put_inline_policy(&devs.id, "team", "{3}").await.unwrap();
    assert_eq!(meta.inline_policy(&alice.id, "own").await.unwrap().as_deref(), Some("{2}"));
    assert_eq!(meta.list_inline_policies(&alice.id).await.unwrap(), ["own"]);
    let managed = pull_policy();
    meta.create_managed_policy(&managed).await.unwrap();
    assert!(matches!(meta.create_managed_policy(&managed).await, Err(MetaError::AlreadyExists)));
    assert!(meta.update_managed_policy(&managed.arn, "{5}").await.unwrap());
    assert_eq!(meta.managed_policy(&managed.arn).await.unwrap().unwrap().document, "{5}");
    assert_eq!(meta.list_managed_policies(ACCOUNT).await.unwrap().len(), 1);
    meta.attach_policy(&devs.id, &managed.arn).await.unwrap();
    let aws_managed = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly";
    meta.attach_policy(&alice.id, aws_managed).await.unwrap();
    assert_eq!(meta.attached_policies(&alice.id).await.unwrap(), [aws_managed]);
    assert_eq!(meta.policy_attachment_count(&managed.arn).await.unwrap(), 1);
    let mut sources = meta.identity_policies(&alice.id).await.unwrap();
    sources.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(
        sources,
        [
            IdentityPolicySource::Attached {
                owner: devs.id.clone(),
                arn: managed.arn.clone(),
                document: Some("{5}".into())
            },
            IdentityPolicySource::Attached { owner: alice.id.clone(), arn: aws_managed.into(), document: None },
            IdentityPolicySource::Inline { owner: devs.id.clone(), name: "team".into(), document: "{3}".into() },
            IdentityPolicySource::Inline { owner: alice.id.clone(), name: "own".into(), document: "{2}".into() },
        ]
    );
    assert!(meta.remove_group_member(&devs.id, &alice.id).await.unwrap());
    assert_eq!(meta.identity_policies(&alice.id).await.unwrap().len(), 2, "group policies left with the group");
    assert!(meta.detach_policy(&alice.id, aws_managed).await.unwrap());
    assert!(meta.delete_inline_policy(&alice.id, "own").await.unwrap());
    assert!(!meta.delete_inline_policy(&alice.id, "own").await.unwrap());
    assert!(meta.identity_policies(&alice.id).await.unwrap().is_empty());
}

pub async fn deletes_principals_and_groups_with_what_they_own(meta: Store) {
    let (alice, devs) = alice_in_devs(meta.as_ref()).await;
    let root = Principal {
        id: ACCOUNT.into(),
        account_id: ACCOUNT.into(),
        name: "root".into(),
        kind: PrincipalKind::Root,
        created_at: 1,
    };
    meta.create_principal(&root).await.unwrap();
    let managed = pull_policy();
    meta.create_managed_policy(&managed).await.unwrap();
    meta.attach_policy(&devs.id, &managed.arn).await.unwrap();
    meta.put_inline_policy(&devs.id, "team", "{3}").await.unwrap();
    assert!(meta.delete_group(&devs.id).await.unwrap());
    assert!(!meta.delete_group(&devs.id).await.unwrap());
    assert_eq!(meta.policy_attachment_count(&managed.arn).await.unwrap(), 0, "attachments go with the group");
    assert!(meta.groups_of(&alice.id).await.unwrap().is_empty());
    assert!(meta.delete_managed_policy(&managed.arn).await.unwrap());
    assert!(meta.delete_principal(&alice.id).await.unwrap());
    assert!(meta.principal_by_name(ACCOUNT, "alice").await.unwrap().is_none());
    assert!(!meta.delete_principal(ACCOUNT).await.unwrap(), "the root is not deleted");
}
