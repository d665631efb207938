//! Replicas on one PostgreSQL database (docs/SCALING.md): mailboxes spread
//! by lease and taken over when a replica stops, a frozen replica fenced
//! off, the shared outbox taken concurrently in lane order, a dead
//! replica's in-flight send left uncertain, the Matrix sync run by one
//! replica, a chat event acted on once. Each test has a fresh database.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailroom::bridge::App;
use mailroom::bridge::replica::{self, Cluster};
use mailroom::chat::ChatEvent;
use mailroom::config::Settings;
use mailroom::config::cluster::ClusterSettings;
use mailroom::domain::chat::{ChatThread, Platform};
use mailroom::domain::cluster::{LeaseResource, ReplicaId};
use mailroom::domain::email::ContentHash;
use mailroom::domain::email::Party;
use mailroom::domain::ids::{MailboxName, MessageId};
use mailroom::domain::mailbox::Checkpoint;
use mailroom::store::sql::SqlStore;
use mailroom::store::{
    ClusterStore, EmailState, JobOutcome, JobSpec, JobState, NewReplica, NewReply, StoreError,
    TicketStore,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::*;
use crate::store_conformance::{addr, agent, new_ticket};

/// Heartbeats every second, leases of three: takeovers in ~4 s.
const CLUSTER: &str = "[cluster]\nheartbeat_secs = 1\nlease_ttl_secs = 3\n";

/// The brief's bound on a takeover.
pub(crate) const TAKEOVER_LIMIT: Duration = Duration::from_secs(10);

/// `[[mailbox]]` sections `box0`, `box1`, … for `users`, on `db`.
fn cluster_config(stack: &Stack, db: &TestDb, users: &[User]) -> Settings {
    let mut text = format!(
        "[database]\nurl = \"{}\"\n\n{CLUSTER}\n{}\n",
        db.url_text,
        outbox_toml("")
    );
    for (i, u) in users.iter().enumerate() {
        text.push_str(&format!(
            r#"
[[mailbox]]
name = "box{i}"
address = "{addr}"
display_name = "Box {i}"
initial_sync = "all"
{LOOP_GUARD}
  [mailbox.imap]
  host = "127.0.0.1"
  port = {imap}
  tls = "none"
  password = "{pw}"
  idle_timeout_secs = 600
  [mailbox.smtp]
  host = "127.0.0.1"
  port = {smtp}
  tls = "none"
  password = "{pw}"
  timeout_secs = 5
"#,
            addr = u.address,
            pw = u.password,
            imap = stack.imap_port,
            smtp = stack.smtp_port,
        ));
    }
    Settings::parse(&text, &|_| None).unwrap_or_else(|p| panic!("test config invalid: {p:?}"))
}

fn cluster_settings(name: &str) -> ClusterSettings {
    ClusterSettings {
        heartbeat: Duration::from_secs(1),
        lease_ttl: Duration::from_secs(3),
        replica_name: Some(name.to_owned()),
    }
}

/// An in-process replica: an [`App`] with a [`Cluster`], its own pool.
struct Replica {
    app: Arc<App>,
    store: Arc<SqlStore>,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

impl Replica {
    async fn start(settings: Settings, db: &TestDb, name: &str) -> Replica {
        Replica::start_with_chats(settings, db, name, Vec::new()).await
    }

    async fn start_with_chats(
        settings: Settings,
        db: &TestDb,
        name: &str,
        chats: Vec<Arc<dyn mailroom::chat::ChatPlatform>>,
    ) -> Replica {
        let app = replica_app(settings, db, name, chats).await;
        init_logs();
        mailroom::mail::tls::install_crypto_provider();
        let (app, store) = (Arc::new(app.0), app.1);
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(app.clone().run(cancel.clone(), None));
        Replica {
            app,
            store,
            cancel,
            handle,
        }
    }

    fn id(&self) -> String {
        replica_id(&self.app)
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("a replica stops within 30 s")
            .expect("replica task");
        self.store.close().await;
    }
}

/// An App wired as a replica (not running), and its store.
async fn replica_app(
    settings: Settings,
    db: &TestDb,
    name: &str,
    chats: Vec<Arc<dyn mailroom::chat::ChatPlatform>>,
) -> (App, Arc<SqlStore>) {
    let store = Arc::new(db.store().await);
    let mut cs = settings.cluster.clone();
    cs.replica_name = Some(name.to_owned());
    let cluster = Arc::new(Cluster::new(&cs, store.clone() as Arc<dyn ClusterStore>));
    let as_replica = store.as_replica(cluster.id.clone(), cluster.lease_ttl);
    let mut app = App::new(settings, Arc::new(as_replica), chats);
    app.cluster = Some(cluster);
    (app, store)
}

fn replica_id(app: &App) -> String {
    app.cluster
        .as_ref()
        .map(|c| c.id.as_str().to_owned())
        .expect("a replica")
}

/// Unexpired leases: resource → owner.
pub(crate) async fn holders(store: &SqlStore) -> BTreeMap<String, String> {
    let st = store.cluster_status().await.expect("status");
    st.leases
        .iter()
        .filter(|l| l.expires_at_ms > st.now_ms)
        .map(|l| (l.resource.clone(), l.owner.as_str().to_owned()))
        .collect()
}

/// How many mailbox leases each owner holds.
async fn shares(store: &SqlStore) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (resource, owner) in holders(store).await {
        if resource.starts_with("mailbox:") {
            *out.entry(owner).or_insert(0) += 1;
        }
    }
    out
}

async fn wait_shares(store: &SqlStore, what: &str, want: &[(&str, usize)]) {
    let want: BTreeMap<String, usize> = want.iter().map(|(o, n)| (o.to_string(), *n)).collect();
    poll_every(
        what,
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async { (shares(store).await == want).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn leases_spread_evenly_and_a_stopped_replica_s_mailboxes_move_without_loss() {
    let stack = Stack::get();
    let db = TestDb::postgres().await;
    let users: Vec<User> = (0..3)
        .map(|_| stack.user("shared", "example.com"))
        .collect();
    let settings = || cluster_config(stack, &db, &users);
    let observer = db.store().await;

    // Alone, a replica takes every mailbox; each newcomer takes its share
    // from the others (ceil(3 / live)).
    let a = Replica::start(settings(), &db, "a").await;
    wait_shares(&observer, "a owns all three", &[(&a.id(), 3)]).await;
    let b = Replica::start(settings(), &db, "b").await;
    let (ai, bi) = (a.id(), b.id());
    poll_every(
        "a and b share 2 + 1",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let s = shares(&observer).await;
            let mut n: Vec<usize> = s.values().copied().collect();
            n.sort();
            (n == [1, 2] && s.contains_key(&ai) && s.contains_key(&bi)).then_some(())
        },
    )
    .await;
    let c = Replica::start(settings(), &db, "c").await;
    wait_shares(
        &observer,
        "one mailbox each",
        &[(&a.id(), 1), (&b.id(), 1), (&c.id(), 1)],
    )
    .await;

    // Each reports the health of its own mailbox only (the watchdog and
    // /healthz would otherwise call the others' mailboxes stale).
    let held = holders(&observer).await;
    for r in [&a, &b, &c] {
        let reported: Vec<String> = r
            .app
            .health
            .report()
            .into_iter()
            .map(|m| format!("mailbox:{}", m.mailbox))
            .collect();
        let owned: Vec<String> = held
            .iter()
            .filter(|(_, o)| **o == r.id())
            .map(|(res, _)| res.clone())
            .collect();
        assert_eq!(reported, owned, "{} reports {reported:?}", r.id());
    }

    // A mail in each mailbox becomes one ticket, whoever owns it.
    let mut expected = BTreeSet::new();
    let write = |round: &str, i: usize| {
        let id = format!("{round}-{i}-{}@example.net", random_hex(4));
        let raw = customer_mail(
            "carol@example.net",
            &users[i].address,
            &id,
            &format!("Question {round} {i}"),
            "Hello",
            None,
        );
        (format!("<{id}>"), raw)
    };
    for i in 0..3 {
        let (id, raw) = write("first", i);
        append(stack, &users[i], "INBOX", &raw).await;
        expected.insert(id);
    }
    wait_tickets(&observer, 3).await;

    // c stops; mail reaches its mailbox while nobody owns it, and after.
    let c_box = holders(&observer)
        .await
        .into_iter()
        .find(|(_, o)| *o == c.id())
        .map(|(r, _)| r)
        .expect("c holds a mailbox");
    let c_index: usize = c_box
        .trim_start_matches("mailbox:box")
        .parse()
        .expect("box index");
    let stopped = Instant::now();
    c.stop().await;
    for i in 0..3 {
        let (id, raw) = write("second", i);
        append(stack, &users[i], "INBOX", &raw).await;
        expected.insert(id);
    }
    let new_owner = poll_every(
        "c's mailbox taken over",
        TAKEOVER_LIMIT,
        Duration::from_millis(50),
        || async {
            holders(&observer)
                .await
                .get(&c_box)
                .filter(|o| **o == a.id() || **o == b.id())
                .cloned()
        },
    )
    .await;
    let took = stopped.elapsed();
    eprintln!("takeover after a graceful stop: {took:?} (by {new_owner})");
    assert!(took < TAKEOVER_LIMIT, "took {took:?}");
    let (id, raw) = write("third", c_index);
    append(stack, &users[c_index], "INBOX", &raw).await;
    expected.insert(id);

    // Every mail once: seven tickets, one email each, no message twice.
    wait_tickets(&observer, 7).await;
    let tickets = observer
        .list_tickets(&mailroom::store::TicketFilter::default())
        .await
        .expect("tickets");
    let mut seen = BTreeSet::new();
    for t in &tickets {
        let emails = observer.emails(t.id).await.expect("emails");
        assert_eq!(emails.len(), 1, "ticket {} has {emails:?}", t.id.get());
        assert!(
            seen.insert(emails[0].message_id.to_string()),
            "a mail became two tickets"
        );
    }
    assert_eq!(seen, expected);
    let mut n: Vec<usize> = shares(&observer).await.values().copied().collect();
    n.sort();
    assert_eq!(n, [1, 2], "the two left share 2 + 1");

    a.stop().await;
    b.stop().await;
    observer.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_frozen_replica_loses_its_lease_and_its_late_writes_are_refused() {
    let stack = Stack::get();
    let db = TestDb::postgres().await;
    let users = vec![stack.user("shared", "example.com")];
    let observer = db.store().await;
    let mailbox = MailboxName::parse("box0").expect("name");
    let resource = LeaseResource::Mailbox(mailbox.clone());

    // A replica takes the mailbox, then stops beating (frozen: a long GC
    // pause, a VM stopped, a cut to the database).
    let frozen = ReplicaId::new("frozen", 1, "f0");
    observer
        .register_replica(&NewReplica {
            id: frozen.clone(),
            name: "frozen".into(),
            host: "test".into(),
            pid: 1,
        })
        .await
        .expect("register");
    let fence = observer
        .acquire_lease(&resource, &frozen, 3_000)
        .await
        .expect("acquire")
        .expect("the lease is free");
    let late = observer.fenced(fence.clone());
    late.begin_ingest()
        .await
        .expect("begin")
        .commit()
        .await
        .expect("the holder may write");

    let started = Instant::now();
    let b = Replica::start(cluster_config(stack, &db, &users), &db, "b").await;
    poll_every(
        "b takes the frozen replica's mailbox",
        TAKEOVER_LIMIT,
        Duration::from_millis(50),
        || async { (holders(&observer).await.get(&resource.key()) == Some(&b.id())).then_some(()) },
    )
    .await;
    eprintln!(
        "takeover from a frozen replica: {:?} (lease ttl 3 s)",
        started.elapsed()
    );
    let st = observer.cluster_status().await.expect("status");
    let now_token = st
        .leases
        .iter()
        .find(|l| l.resource == resource.key())
        .map(|l| l.token)
        .expect("lease row");
    assert!(now_token > fence.token, "the token grows on takeover");

    // b works the mailbox; the frozen replica, waking, cannot write.
    let raw = customer_mail(
        "carol@example.net",
        &users[0].address,
        &format!("fenced-{}@example.net", random_hex(4)),
        "Hello",
        "body",
        None,
    );
    append(stack, &users[0], "INBOX", &raw).await;
    wait_tickets(&observer, 1).await;
    let before = observer.checkpoint(&mailbox).await.expect("checkpoint");
    assert!(before.is_some(), "b saved its checkpoint");
    let stale = Checkpoint {
        uid_validity: 1,
        last_uid: 0,
    };
    let refused = late.save_checkpoint(&mailbox, stale, 0).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { ref resource, token }) if *resource == "mailbox:box0" && token == fence.token),
        "{refused:?}"
    );
    let refused = late.begin_ingest().await.expect("begin").commit().await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    assert_eq!(
        observer.checkpoint(&mailbox).await.expect("checkpoint"),
        before
    );

    b.stop().await;
    observer.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn two_replicas_taking_jobs_at_once_never_take_one_twice_and_keep_lane_order() {
    let db = TestDb::postgres().await;
    let base = db.store().await;
    let ttl = Duration::from_secs(30);
    let mut stores = Vec::new();
    for name in ["x", "y"] {
        let id = ReplicaId::new(name, 1, "j");
        base.register_replica(&NewReplica {
            id: id.clone(),
            name: name.into(),
            host: "test".into(),
            pid: 1,
        })
        .await
        .expect("register");
        stores.push(Arc::new(base.as_replica(id, ttl)));
    }
    // Three lanes, interleaved.
    let per_lane = 15;
    for i in 0..per_lane {
        let specs = [
            JobSpec::ChatRoomNotice {
                platform: Platform::Matrix,
                room: "!r".into(),
                text: format!("m{i}"),
            },
            JobSpec::ChatRoomNotice {
                platform: Platform::Slack,
                room: "C1".into(),
                text: format!("s{i}"),
            },
            JobSpec::FileSent { email_id: i },
        ];
        for spec in &specs {
            base.enqueue(None, spec, 0, 0).await.expect("enqueue");
        }
    }
    let total = 3 * per_lane as usize;
    let busy: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let taken: Arc<Mutex<Vec<(String, i64, usize)>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..4 {
        let store = stores[w % 2].clone();
        let (busy, taken) = (busy.clone(), taken.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let job = store.next_job(1).await.expect("next job");
                let Some(job) = job else {
                    if taken.lock().expect("lock").len() >= total {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                };
                let lane = job.spec.lane(job.ticket);
                assert!(
                    busy.lock().expect("lock").insert(lane.clone()),
                    "two jobs of {lane} in flight at once"
                );
                taken
                    .lock()
                    .expect("lock")
                    .push((lane.clone(), job.id, w % 2));
                tokio::time::sleep(Duration::from_millis(3)).await;
                // Freed before the job ends: until the end commits, its
                // lane's next job cannot be taken anyway.
                busy.lock().expect("lock").remove(&lane);
                store
                    .finish_job(&job, &JobOutcome::Done, 2)
                    .await
                    .expect("finish");
            }
        }));
    }
    for w in workers {
        tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .expect("the workers finish")
            .expect("worker");
    }
    let taken = taken.lock().expect("lock").clone();
    let ids: BTreeSet<i64> = taken.iter().map(|(_, id, _)| *id).collect();
    assert_eq!(ids.len(), taken.len(), "a job was taken twice");
    assert_eq!(taken.len(), total);
    let mut by_lane: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (lane, id, _) in &taken {
        by_lane.entry(lane).or_default().push(*id);
    }
    for (lane, ids) in &by_lane {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{lane} out of order: {ids:?}"
        );
    }
    for r in 0..2 {
        assert!(
            taken.iter().any(|(_, _, by)| *by == r),
            "replica {r} took nothing"
        );
    }
    assert_eq!(
        base.jobs(&[JobState::Done]).await.expect("jobs").len(),
        total
    );
    base.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_dead_replica_s_in_flight_reply_becomes_uncertain_and_is_never_resent() {
    let stack = Stack::get();
    let db = TestDb::postgres().await;
    let base = db.store().await;
    let s: &dyn TicketStore = &base;
    let t = new_ticket(s, "crash@x", 1).await;
    let email_id = s
        .queue_reply(NewReply {
            ticket: t,
            mailbox: crate::store_conformance::mb(),
            author: agent("@alice:x"),
            message_id: MessageId::parse(&format!("r-{}@example.com", random_hex(4))).expect("id"),
            content_hash: ContentHash::from_stored("r".into()),
            from: Party::new(Some("Alice".into()), addr("support@example.com")),
            subject: "Re: Invoice".into(),
            raw: b"Message-ID: <r@example.com>\r\n\r\nhi\r\n".to_vec(),
            send_at_ms: 0,
            now_ms: 0,
        })
        .await
        .expect("queue reply");
    // A replica takes the chat post and the send, then dies mid-send.
    let dead = ReplicaId::new("dead", 1, "d");
    base.register_replica(&NewReplica {
        id: dead.clone(),
        name: "dead".into(),
        host: "test".into(),
        pid: 1,
    })
    .await
    .expect("register");
    let dead_store = base.as_replica(dead, Duration::from_secs(3));
    let mut kinds = BTreeSet::new();
    let mut send = None;
    for _ in 0..2 {
        let j = dead_store.next_job(1).await.expect("take").expect("a job");
        kinds.insert(j.spec.kind());
        if j.spec.at_most_once() {
            send = Some(j);
        }
    }
    assert_eq!(kinds, BTreeSet::from(["chat_post", "send_reply"]));
    let send = send.expect("the send");

    // A live replica leaves the jobs alone while the dead one's heartbeat
    // is fresh (it might be sending), then recovers them under the crash
    // rules: the post again, the send uncertain.
    let live = ReplicaId::new("live", 2, "l");
    base.register_replica(&NewReplica {
        id: live.clone(),
        name: "live".into(),
        host: "test".into(),
        pid: 2,
    })
    .await
    .expect("register");
    let live_store = base.as_replica(live, Duration::from_secs(3));
    assert!(
        live_store
            .recover_in_flight(2)
            .await
            .expect("recover")
            .is_empty(),
        "a live replica's jobs were taken from it"
    );
    let users = vec![stack.user("shared", "example.com")];
    let r = Replica::start(cluster_config(stack, &db, &users), &db, "r").await;
    poll_every(
        "the send marked uncertain",
        TAKEOVER_LIMIT,
        Duration::from_millis(100),
        || async {
            let out = base.outgoing(email_id).await.expect("outgoing")?;
            (out.state == EmailState::Uncertain).then_some(())
        },
    )
    .await;
    assert_eq!(
        base.jobs(&[JobState::Uncertain]).await.expect("jobs").len(),
        1
    );
    assert!(
        !base
            .jobs(&[JobState::Pending, JobState::InFlight])
            .await
            .expect("jobs")
            .iter()
            .any(|j| j.spec.at_most_once()),
        "the send was queued again"
    );
    // The dead replica, waking, cannot end the job it lost.
    dead_store
        .finish_job(
            &send,
            &JobOutcome::Retry {
                at_ms: 0,
                error: "late".into(),
            },
            5,
        )
        .await
        .expect("finish");
    assert_eq!(
        base.jobs(&[JobState::Uncertain]).await.expect("jobs").len(),
        1,
        "a replica that lost a job changed it"
    );
    r.stop().await;
    base.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn one_replica_runs_the_matrix_sync_and_another_takes_over_when_it_stops() {
    let db = TestDb::postgres().await;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let runner: Arc<Mutex<Option<String>>> = Arc::default();
    let resource = LeaseResource::MatrixSync("@bot:example.org".into());
    let mut replicas = Vec::new();
    for name in ["x", "y"] {
        let store = Arc::new(db.store().await);
        let cluster = Arc::new(Cluster::new(
            &cluster_settings(name),
            store.clone() as Arc<dyn ClusterStore>,
        ));
        cluster.register().await.expect("register");
        let cancel = CancellationToken::new();
        let (running, most, runner) = (running.clone(), most.clone(), runner.clone());
        let me = name.to_owned();
        // Stands in for `MatrixChat::run`: counts how many run at once.
        let task = move |stop: CancellationToken| {
            let (running, most, runner, me) =
                (running.clone(), most.clone(), runner.clone(), me.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                *runner.lock().expect("lock") = Some(me);
                stop.cancelled().await;
                running.fetch_sub(1, Ordering::SeqCst);
            }
        };
        let handle = tokio::spawn(replica::leased(
            cluster,
            resource.clone(),
            task,
            cancel.clone(),
        ));
        replicas.push((name, cancel, handle, store));
    }
    let first = wait_for("a sync runs", TAKEOVER_LIMIT, || async {
        runner.lock().expect("lock").clone()
    })
    .await;
    // Both keep trying for a few lease renewals; one sync only.
    let observer = db.store().await;
    let token = |st: mailroom::store::ClusterStatus| {
        st.leases
            .iter()
            .find(|l| l.resource == resource.key())
            .map(|l| l.expires_at_ms)
    };
    let seen = token(observer.cluster_status().await.expect("status")).expect("lease");
    poll_every(
        "the lease renewed twice",
        TAKEOVER_LIMIT,
        Duration::from_millis(100),
        || async {
            let now = token(observer.cluster_status().await.expect("status"))?;
            (now >= seen + 2_000).then_some(())
        },
    )
    .await;
    assert_eq!(most.load(Ordering::SeqCst), 1, "two syncs ran at once");
    let at = replicas
        .iter()
        .position(|(n, ..)| *n == first)
        .expect("runner");
    let (_, cancel, handle, store) = replicas.remove(at);
    let stopped = Instant::now();
    cancel.cancel();
    handle.await.expect("leased task");
    store.close().await;
    let second = wait_for("the other replica syncs", TAKEOVER_LIMIT, || async {
        runner.lock().expect("lock").clone().filter(|r| *r != first)
    })
    .await;
    eprintln!(
        "matrix sync moved from {first} to {second} in {:?}",
        stopped.elapsed()
    );
    assert_eq!(running.load(Ordering::SeqCst), 1);
    assert_eq!(most.load(Ordering::SeqCst), 1, "two syncs ran at once");
    for (_, cancel, handle, store) in replicas {
        cancel.cancel();
        handle.await.expect("leased task");
        store.close().await;
    }
    observer.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_chat_event_reaching_two_replicas_is_acted_on_once() {
    let stack = Stack::get();
    let db = TestDb::postgres().await;
    let users = vec![stack.user("shared", "example.com")];
    let chat = || {
        Arc::new(crate::faults::RecordingChat::default()) as Arc<dyn mailroom::chat::ChatPlatform>
    };
    let (a, a_store) =
        replica_app(cluster_config(stack, &db, &users), &db, "a", vec![chat()]).await;
    let (b, b_store) =
        replica_app(cluster_config(stack, &db, &users), &db, "b", vec![chat()]).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let mailbox = MailboxName::parse("box0").expect("name");
    let raw = customer_mail(
        "carol@example.net",
        &users[0].address,
        &format!("once-{}@example.net", random_hex(4)),
        "Where is my order?",
        "Hello",
        None,
    );
    let t = mailroom::bridge::ingest::MailboxIngest::new(a.clone(), mailbox)
        .ingest(raw, None)
        .await
        .expect("ingest")
        .ticket()
        .expect("a new ticket");
    let s: &dyn TicketStore = a.store.as_ref();
    let thread = ChatThread {
        platform: Platform::Matrix,
        room: "!room:x".into(),
        thread_ref: format!("$root-{}", t.get()),
    };
    s.link_chat_thread(t, &thread).await.expect("link");
    let alice = agent("@alice:x");
    // Slack (Socket Mode on every replica) or a Matrix sync handed over
    // mid-batch may deliver one event to two replicas. A `!reply` is the
    // event whose double would show: two replies queued.
    let claim = ChatEvent::Reaction {
        thread: thread.clone(),
        agent: alice.clone(),
        key: "🙋".into(),
        added: true,
        event_ref: "$claim-1".into(),
    };
    let reply = ChatEvent::ThreadMessage {
        thread,
        agent: alice,
        text: "!reply Your order ships today.".into(),
        event_ref: "$reply-1".into(),
    };
    for ev in [claim, reply] {
        let (ra, rb) = tokio::join!(
            mailroom::bridge::chat::handle(&a, ev.clone()),
            mailroom::bridge::chat::handle(&b, ev)
        );
        ra.expect("a handles");
        rb.expect("b handles");
    }
    let actions = audit_actions(s, t).await;
    assert_eq!(
        actions.iter().filter(|a| a.as_str() == "claim").count(),
        1,
        "{actions:?}"
    );
    let outbound: Vec<_> = s
        .emails(t)
        .await
        .expect("emails")
        .into_iter()
        .filter(|e| e.author.is_some())
        .collect();
    assert_eq!(outbound.len(), 1, "one reply queued: {outbound:?}");
    a_store.close().await;
    b_store.close().await;
    db.cleanup().await;
}

/// Every replica posts to Matrix, not only the one holding the
/// `matrix-sync` lease: each learns its rooms at start (one sync, its
/// history not acted on). Before, a replica that never held the lease had
/// never synced, knew no room, and retried every post it took for good.
#[tokio::test]
async fn every_replica_posts_to_matrix_with_or_without_the_sync_lease() {
    let w = crate::matrix::World::new().await;
    let db = TestDb::postgres().await;
    let mut replicas = Vec::new();
    for name in ["m1", "m2"] {
        let mut settings = w.settings(0, "");
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(m) = settings.matrix.as_mut() {
            m.state_dir = dir.path().to_owned();
        }
        let store = Arc::new(db.store().await);
        let cluster = Arc::new(Cluster::new(
            &cluster_settings(name),
            store.clone() as Arc<dyn ClusterStore>,
        ));
        cluster.register().await.expect("register");
        let cancel = CancellationToken::new();
        let chats = mailroom::bridge::connect_chats_as(&settings, &cancel, Some(cluster))
            .await
            .expect("matrix connects");
        replicas.push((name, chats, cancel, store, dir));
    }
    // One of the two holds the sync lease by now, for a while.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let room = w.room.to_string();
    for (name, chats, ..) in &replicas {
        let matrix = chats.platforms[0].clone();
        let text = format!("posted by replica {name}");
        let room = room.clone();
        poll_every(
            &format!("replica {name} posts"),
            Duration::from_secs(15),
            Duration::from_millis(200),
            || {
                let (matrix, room, text) = (matrix.clone(), room.clone(), text.clone());
                async move { matrix.room_notice(&room, &text).await.ok() }
            },
        )
        .await;
        crate::matrix::wait_event(&w.alice, &w.room, "the replica's post", |e| {
            crate::matrix::body(e) == text
        })
        .await;
    }
    for (_, chats, cancel, store, _dir) in replicas {
        cancel.cancel();
        for t in chats.tasks {
            let _ = t.await;
        }
        store.close().await;
    }
    db.cleanup().await;
}
