//! Scenario 4: the watched folder recreated with the same messages — a new
//! UIDVALIDITY, every message under a new UID — while mailroom runs.
//!
//! Done as an admin or a migration tool would, over IMAP: DELETE the
//! folder, CREATE it, APPEND the same messages again. mailroom must
//! rescan, recognise every message it has (no new ticket, no new root), and
//! still ingest mail that arrives after the change.

use std::time::{Duration, Instant};

use mailroom::mail::imap;

use crate::harness::{
    Db, Figures, MatrixWorld, SERIAL, StoreProbe, chaos_mail, log_count, poll, sizes,
};

const FOLDER: &str = "Support";
const EVERY: Duration = Duration::from_millis(50);

pub async fn run(db: Db) {
    let _serial = SERIAL.lock().await;
    crate::setup();
    let n = sizes().emails.max(8);
    let more = (n / 10).max(5);
    let limit = Duration::from_secs(120 + n as u64);
    let w = MatrixWorld::new(db).await;
    let imap_settings = w.stack.imap_settings(&w.support, FOLDER);
    {
        let mut s = imap::connect_password(&imap_settings)
            .await
            .expect("IMAP login");
        s.create(FOLDER).await.expect("CREATE");
        imap::logout(s).await;
    }
    w.append_to(FOLDER, 0..n, 0).await;
    let config = w.config_in(w.hs.port, w.stack.imap_port, FOLDER);
    let d = w.spawn(&config);
    let probe = StoreProbe::open(&w.db).await;
    poll("the first n ingested and posted", limit, EVERY, || async {
        let t = probe.tickets().await.unwrap_or(0) as usize;
        let p = probe.threads().await.unwrap_or(0) as usize;
        (t >= n && p >= n).then_some(())
    })
    .await;
    let old_uv = probe.uid_validity().await.expect("a checkpoint");

    // Recreate the folder with the same messages.
    let new_uv = {
        let mut s = imap::connect_password(&imap_settings)
            .await
            .expect("IMAP login");
        s.delete(FOLDER).await.expect("DELETE");
        s.create(FOLDER).await.expect("CREATE");
        for i in 0..n {
            let raw = chaos_mail(&w.customer, &w.support, &w.tag, i, 0);
            // Dovecot may answer "Mailbox was deleted under us" to APPENDs
            // right after the re-CREATE while mailroom's session reopens the
            // folder (its mailbox list index catching up), and the session
            // is unusable after that: retry on a new session, bounded.
            let mut tries = 0;
            while let Err(e) = s.append(FOLDER, None, None, &raw).await {
                tries += 1;
                assert!(tries < 20, "APPEND: {e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                s = imap::connect_password(&imap_settings)
                    .await
                    .expect("IMAP login");
            }
        }
        let st = imap::examine(&mut s, FOLDER).await.expect("EXAMINE");
        imap::logout(s).await;
        st.uid_validity
    };
    assert_ne!(
        i64::from(new_uv),
        old_uv,
        "the recreated folder has a new UIDVALIDITY"
    );
    let changed = Instant::now();
    poll(
        "the new UIDVALIDITY in the checkpoint",
        limit,
        EVERY,
        || async { (probe.uid_validity().await == Some(i64::from(new_uv))).then_some(()) },
    )
    .await;
    let rescan_ms = changed.elapsed().as_millis();
    let after_rescan = probe.tickets().await.unwrap_or(-1);

    // Mail after the change.
    let appended = Instant::now();
    w.append_to(FOLDER, n..n + more, 0).await;
    let new_mail_ms = poll("mail after the change", limit, EVERY, || async {
        (probe.tickets().await.unwrap_or(0) as usize >= n + more)
            .then(|| appended.elapsed().as_millis())
    })
    .await;
    let total = n + more;
    let t = w.settle(total, limit).await;
    let end = probe.finish(d).await;
    let noticed = log_count(&w.log(), "UIDVALIDITY changed");

    Figures::once(
        total,
        &t,
        rescan_ms,
        vec![
            ("old_uidvalidity".into(), old_uv.to_string()),
            ("new_uidvalidity".into(), new_uv.to_string()),
            ("tickets_after_rescan".into(), after_rescan.to_string()),
            ("new_mail_stored_ms".into(), new_mail_ms.to_string()),
            ("rescan_logged".into(), noticed.to_string()),
            ("in_order".into(), t.in_order.to_string()),
        ],
    )
    .print("uidvalidity", db);
    assert_eq!(after_rescan, n as i64, "the rescan made no new ticket");
    t.assert_each_once(total, "no duplicates, new mail ingested", &w.log());
    assert_eq!((end.tickets, end.failed), (total as i64, 0), "the store");
    assert!(noticed >= 1, "the change is logged");
    assert_eq!(end.code, Some(0));
    w.db.cleanup().await;
}
