//! The OAuth2 grant part of the store conformance suite (run on both
//! databases by `store_conformance`'s macro).

use std::sync::Arc;

use mailroom::domain::chat::Platform;
use mailroom::domain::ids::MailboxName;
use mailroom::store::sql::SqlStore;
use mailroom::store::*;

fn new_grant(mailbox: &MailboxName, refresh: &[u8]) -> NewGrant {
    NewGrant {
        mailbox: mailbox.clone(),
        account: "alice@example.com".into(),
        scopes: "imap smtp offline_access".into(),
        refresh_token: refresh.to_vec(),
        access_token: b"sealed-access-1".to_vec(),
        access_expires_at_ms: Some(10_000),
    }
}

pub async fn oauth_grants_refresh_rotate_and_are_refused_once(s: Arc<SqlStore>) {
    let support = MailboxName::parse("support").unwrap();
    let sales = MailboxName::parse("sales").unwrap();
    assert_eq!(s.grant(&support).await.unwrap(), None);
    let g1 = s
        .save_grant(&new_grant(&support, b"sealed-refresh-1"), 1_000)
        .await
        .unwrap();
    s.save_grant(&new_grant(&sales, b"sealed-refresh-s"), 1_000)
        .await
        .unwrap();
    let stored = s.grant(&support).await.unwrap().unwrap();
    assert_eq!(stored.generation, g1);
    assert_eq!(stored.refresh_token, b"sealed-refresh-1");
    assert_eq!(stored.access_expires_at_ms, Some(10_000));
    assert_eq!(stored.created_at_ms, 1_000);

    // A refresh that rotates writes both tokens at once; one that does not
    // keeps the refresh token.
    let refreshed = |generation, refresh: Option<&[u8]>| Refreshed {
        mailbox: support.clone(),
        generation,
        access_token: b"sealed-access-2".to_vec(),
        access_expires_at_ms: Some(20_000),
        refresh_token: refresh.map(<[u8]>::to_vec),
        scopes: None,
    };
    s.grant_error(&support, g1, "token endpoint: HTTP 503", 1_500)
        .await
        .unwrap();
    assert!(
        s.grant_refreshed(&refreshed(g1, Some(b"sealed-refresh-2")), 2_000)
            .await
            .unwrap()
    );
    let stored = s.grant(&support).await.unwrap().unwrap();
    assert_eq!(stored.refresh_token, b"sealed-refresh-2");
    assert_eq!(
        stored.access_token.as_deref(),
        Some(&b"sealed-access-2"[..])
    );
    assert_eq!(
        (stored.refreshed_at_ms, stored.last_error),
        (Some(2_000), None)
    );
    assert!(
        s.grant_refreshed(&refreshed(g1, None), 2_500)
            .await
            .unwrap()
    );
    assert_eq!(
        s.grant(&support).await.unwrap().unwrap().refresh_token,
        b"sealed-refresh-2"
    );
    assert!(
        !s.grant_refreshed(&refreshed(g1 + 99, None), 2_600)
            .await
            .unwrap(),
        "a refresh of another grant writes nothing"
    );

    // Refused: told once, however often it is reported.
    let notice = JobSpec::ChatRoomNotice {
        platform: Platform::Matrix,
        room: "!room".into(),
        text: "signed out".into(),
    };
    let pending =
        |s: Arc<SqlStore>| async move { s.jobs(&[JobState::Pending]).await.unwrap().len() };
    assert!(
        s.grant_refused(
            &support,
            g1,
            "invalid_grant",
            std::slice::from_ref(&notice),
            3_000
        )
        .await
        .unwrap()
    );
    assert!(
        !s.grant_refused(
            &support,
            g1,
            "invalid_grant",
            std::slice::from_ref(&notice),
            3_100
        )
        .await
        .unwrap()
    );
    assert_eq!(pending(s.clone()).await, 1, "one notice");
    let stored = s.grant(&support).await.unwrap().unwrap();
    assert_eq!(stored.refused_told_at_ms, Some(3_000));
    assert_eq!(stored.last_error.as_deref(), Some("invalid_grant"));
    assert!(
        !s.grant_refreshed(&refreshed(g1, None), 3_200)
            .await
            .unwrap(),
        "a refused grant takes no refresh"
    );

    // A new sign-in replaces it: new generation, no error, may be told again.
    let g2 = s
        .save_grant(&new_grant(&support, b"sealed-refresh-3"), 4_000)
        .await
        .unwrap();
    assert!(g2 > g1);
    let stored = s.grant(&support).await.unwrap().unwrap();
    assert_eq!((stored.last_error, stored.refused_told_at_ms), (None, None));
    assert!(
        s.grant_refused(&support, g2, "invalid_grant", &[notice], 5_000)
            .await
            .unwrap()
    );
    assert_eq!(pending(s.clone()).await, 2);

    // Forgotten, and signed in again: never a generation seen before.
    assert!(s.delete_grant(&support, 6_000).await.unwrap());
    assert!(!s.delete_grant(&support, 6_001).await.unwrap());
    assert_eq!(s.grant(&support).await.unwrap(), None);
    let g3 = s
        .save_grant(&new_grant(&support, b"sealed-refresh-4"), 7_000)
        .await
        .unwrap();
    assert!(g3 != g1 && g3 != g2, "{g1} {g2} {g3}");
    let all: Vec<String> = s
        .grants()
        .await
        .unwrap()
        .iter()
        .map(|g| g.mailbox.to_string())
        .collect();
    assert_eq!(all, ["sales", "support"]);
}

/// One refresh at a time across processes: the claim is exclusive until it
/// expires or a refresh (or failure) is stored, and holds only for a
/// claimant that saw the grant's latest refresh: one that read the grant
/// before another's refresh landed holds a refresh token rotated away.
pub async fn a_grant_refresh_is_claimed_by_one_process_that_saw_the_latest_refresh(
    s: Arc<SqlStore>,
) {
    let support = MailboxName::parse("support").unwrap();
    let g = s
        .save_grant(&new_grant(&support, b"sealed-refresh-1"), 1_000)
        .await
        .unwrap();
    let seen = s.grant(&support).await.unwrap().unwrap().refreshed_at_ms;
    assert!(
        s.grant_claim_refresh(&support, g, seen, 2_000, 42_000)
            .await
            .unwrap()
    );
    assert!(
        !s.grant_claim_refresh(&support, g, seen, 2_001, 42_001)
            .await
            .unwrap(),
        "a second process while the first holds the claim"
    );
    assert!(
        !s.grant_claim_refresh(&support, g + 1, seen, 50_000, 90_000)
            .await
            .unwrap(),
        "another grant's generation"
    );
    // The first stores its refresh, rotating the refresh token: the claim ends.
    let refreshed = Refreshed {
        mailbox: support.clone(),
        generation: g,
        access_token: b"sealed-access-2".to_vec(),
        access_expires_at_ms: Some(20_000),
        refresh_token: Some(b"sealed-refresh-2".to_vec()),
        scopes: None,
    };
    assert!(s.grant_refreshed(&refreshed, 3_000).await.unwrap());
    assert!(
        !s.grant_claim_refresh(&support, g, seen, 3_001, 43_001)
            .await
            .unwrap(),
        "a process that read the grant before that refresh"
    );
    let now = s.grant(&support).await.unwrap().unwrap();
    assert_eq!(now.refreshed_at_ms, Some(3_000));
    assert!(
        s.grant_claim_refresh(&support, g, now.refreshed_at_ms, 3_002, 43_002)
            .await
            .unwrap(),
        "one that read it since"
    );
    // A claim left by a process that died ends by itself.
    assert!(
        !s.grant_claim_refresh(&support, g, now.refreshed_at_ms, 43_001, 83_001)
            .await
            .unwrap()
    );
    assert!(
        s.grant_claim_refresh(&support, g, now.refreshed_at_ms, 43_002, 83_002)
            .await
            .unwrap()
    );
    // A failure recorded ends the claim too.
    s.grant_error(&support, g, "unreachable", 43_100)
        .await
        .unwrap();
    assert!(
        s.grant_claim_refresh(&support, g, now.refreshed_at_ms, 43_200, 83_200)
            .await
            .unwrap()
    );
}
