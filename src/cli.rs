//! The `mailroom` command line. `main.rs` only parses arguments and calls [`run`].

mod auth;
mod run;
mod status;

pub use auth::AuthCommand;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::bridge::reply::{ReplyRequest, queue_reply};
use crate::bridge::{App, now_ms};
use crate::config::Settings;
use crate::domain::ids::{Actor, Agent, Tag};
use crate::domain::ids::{MailboxName, TicketId};
use crate::domain::outbound::OutboundAttachment;
use crate::domain::ticket::Status;
use crate::domain::ticket::TicketEvent;
use crate::store::Applied;
use crate::store::settings::DatabaseUrl;
use crate::store::sql::SqlStore;
use crate::store::{JobState, Requeued, TicketFilter, TicketStore};

#[derive(Debug, Parser)]
#[command(
    name = "mailroom",
    version,
    about = "A shared mailbox as claimable threads in your team's chat"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        env = "MAILROOM_CONFIG",
        default_value = "bot-config/mailroom.toml"
    )]
    pub config: PathBuf,
    /// Log format on standard error.
    #[arg(long, global = true, env = "MAILROOM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bridge: watch the mailboxes, post to chat, send replies.
    Run,
    /// Check a configuration file and report every problem with its key path.
    CheckConfig {
        /// File to check (default: --config).
        file: Option<PathBuf>,
    },
    /// Create or upgrade the database schema.
    Migrate,
    /// Show who runs on this database: replicas, their heartbeats and
    /// leases (PostgreSQL), or the process holding it (SQLite).
    Status,
    /// Inspect tickets.
    #[command(subcommand)]
    Tickets(TicketsCommand),
    /// Inspect the outbox (queued, failed and uncertain work).
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Routing rules.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Sign OAuth2 mailboxes in and out, and show their grants.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// The web dashboard.
    #[command(subcommand)]
    Web(WebCommand),
}

#[derive(Debug, Subcommand)]
pub enum WebCommand {
    /// Print a one-time sign-in link to the dashboard for a teammate
    /// (audited). Teammates can get one themselves with `!mailroom dashboard`.
    Link {
        /// Who signs in (chat user id: @alice:example.com, slack:U024BE7LH).
        #[arg(long = "as")]
        who: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Show which rules an email would hit and what they would do (and why
    /// the others miss). Touches nothing: no database, no network.
    Test {
        /// The email, as an .eml file.
        file: PathBuf,
        /// The mailbox it arrives in (default: the one it is addressed to).
        #[arg(long)]
        mailbox: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TicketsCommand {
    /// List tickets, newest first.
    List(ListArgs),
    /// Show a ticket, its messages and its full audit history.
    Show {
        /// Ticket number (42 or #42).
        id: String,
    },
    /// Claim a ticket (take it).
    Claim(ActArgs),
    /// Give back your claim.
    Unclaim(ActArgs),
    /// Hand a ticket to a teammate.
    Assign {
        #[command(flatten)]
        act: ActArgs,
        /// The teammate (chat user id, e.g. @bob:example.com).
        to: String,
    },
    /// Remove whoever owns a ticket.
    Unassign(ActArgs),
    /// Mark a ticket as waiting on the customer.
    Pending(ActArgs),
    /// Close a ticket.
    Close(ActArgs),
    /// Reopen a closed or pending ticket.
    Reopen(ActArgs),
    /// Add a tag.
    Tag {
        #[command(flatten)]
        act: ActArgs,
        tag: String,
    },
    /// Remove a tag.
    Untag {
        #[command(flatten)]
        act: ActArgs,
        tag: String,
    },
    /// Queue a reply to the customer, from the shared address. The running
    /// `mailroom run` sends it.
    Reply {
        #[command(flatten)]
        act: ActArgs,
        /// Your name as shown in From ("Alice via Example Support").
        #[arg(long)]
        name: Option<String>,
        /// The reply text (Markdown).
        #[arg(
            long,
            conflicts_with = "message_file",
            required_unless_present = "message_file"
        )]
        message: Option<String>,
        /// Read the reply text from a file ("-" for standard input).
        #[arg(long)]
        message_file: Option<PathBuf>,
        /// Attach a file (repeatable).
        #[arg(long)]
        attach: Vec<PathBuf>,
    },
    /// Export a ticket's messages.
    Export {
        /// Ticket number (42 or #42).
        id: String,
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// mbox: file to write (default: standard output). eml: folder to write
        /// one file per message into (default: ./ticket-ID).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ActArgs {
    /// Ticket number (42 or #42).
    pub id: String,
    /// Who is acting, for the audit log (default: cli:$USER).
    #[arg(long = "as")]
    pub actor: Option<String>,
}

/// `--as WHO`, or `cli:$USER` when it is not given.
fn cli_agent(actor: Option<&str>) -> anyhow::Result<Agent> {
    let who = match actor {
        Some(a) => a.to_owned(),
        None => format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "operator".into())
        ),
    };
    Agent::parse(&who).map_err(|e| anyhow::anyhow!("--as: {e}"))
}

impl ActArgs {
    fn agent(&self) -> anyhow::Result<Agent> {
        cli_agent(self.actor.as_deref())
    }
    fn ticket(&self) -> anyhow::Result<TicketId> {
        TicketId::parse(&self.id).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum)]
    pub status: Option<StatusArg>,
    #[arg(long)]
    pub mailbox: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    Open,
    Claimed,
    Pending,
    Closed,
    /// Set aside by a routing rule (kept, not posted).
    Ignored,
    /// Set aside by a routing rule as spam.
    Spam,
    /// Snoozed (`!snooze`), whatever the status; left out of the default list.
    Snoozed,
}

impl StatusArg {
    /// The status to list; `None` for snoozed tickets, which have any.
    fn status(self) -> Option<Status> {
        Some(match self {
            StatusArg::Open => Status::Open,
            StatusArg::Claimed => Status::Claimed,
            StatusArg::Pending => Status::Pending,
            StatusArg::Closed => Status::Closed,
            StatusArg::Ignored => Status::Ignored,
            StatusArg::Spam => Status::Spam,
            StatusArg::Snoozed => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Eml,
    Mbox,
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List jobs that are waiting, failed or uncertain (all with --all).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Queue a failed job again (after fixing what made it fail), e.g. an
    /// email that could not be posted to chat. The running daemon does it.
    Retry {
        /// The job's number, as `outbox list` shows it.
        id: i64,
        /// Who asks, for the audit log (default: cli:$USER).
        #[arg(long = "as")]
        actor: Option<String>,
    },
}

/// Log targets that stay off whatever `MAILROOM_LOG` asks for, because they
/// write credentials: async-imap's stream logs every command it sends at
/// trace level, `LOGIN` with its password and `AUTHENTICATE` with its
/// access token included.
pub const NEVER_LOGGED: &[&str] = &["async_imap::imap_stream=off"];

/// The log filter: `MAILROOM_LOG` (`from_env`) if it parses, else `default`;
/// [`NEVER_LOGGED`] on top either way.
pub fn log_filter(from_env: Option<&str>, default: &str) -> tracing_subscriber::EnvFilter {
    let mut filter = from_env
        .and_then(|s| tracing_subscriber::EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
    for d in NEVER_LOGGED {
        match d.parse() {
            Ok(d) => filter = filter.add_directive(d),
            Err(e) => eprintln!("mailroom: bad built-in log directive {d}: {e}"),
        }
    }
    filter
}

/// Exit codes: 0 ok, 1 runtime failure, 2 invalid configuration or usage.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Auth(cmd) => auth::run(&cli.config, cmd).await,
        Command::CheckConfig { file } => Ok(check_config(file.as_deref().unwrap_or(&cli.config))),
        Command::Run => {
            let settings = load(&cli.config)?;
            run::run_daemon(settings).await.map(|_| 0)
        }
        Command::Migrate => {
            let settings = load_offline(&cli.config)?;
            let store = open_store(&settings).await?;
            println!("database {} is up to date", settings.database.url);
            store.close().await;
            Ok(0)
        }
        Command::Status => {
            let settings = load_offline(&cli.config)?;
            let mut out = std::io::stdout().lock();
            match &settings.database.url {
                DatabaseUrl::Sqlite { path } => status::print_sqlite(path.as_deref(), &mut out)?,
                DatabaseUrl::Postgres(_) => {
                    let store = open_store(&settings).await?;
                    let cluster = crate::store::ClusterStore::cluster_status(&store).await;
                    store.close().await;
                    let live = status::Liveness {
                        ttl_ms: settings.cluster.lease_ttl.as_millis() as i64,
                    };
                    status::print_cluster(&cluster?, &live, &mut out)?;
                }
            }
            Ok(0)
        }
        Command::Tickets(cmd) => {
            let settings = load_offline(&cli.config)?;
            let store = Arc::new(open_store(&settings).await?);
            let app = App::new(settings, store.clone(), Vec::new());
            let mut out = std::io::stdout().lock();
            let r = tickets(&app, cmd, &mut out).await;
            store.close().await;
            r.map(|_| 0)
        }
        Command::Web(WebCommand::Link { who }) => {
            let settings = load_offline(&cli.config)?;
            let agent = Agent::parse(&who).map_err(|e| anyhow::anyhow!("--as: {e}"))?;
            let store = Arc::new(open_store(&settings).await?);
            let app = App::new(settings, store.clone(), Vec::new());
            let link = crate::bridge::web::dashboard_link(&app, &agent, "cli").await;
            store.close().await;
            match link {
                Ok(url) => {
                    println!("{url}");
                    Ok(0)
                }
                Err(crate::web::auth::IssueError::Disabled) => {
                    eprintln!(
                        "web link: the dashboard is not enabled; set [web] listen in {}",
                        cli.config.display()
                    );
                    Ok(2)
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Rules(RulesCommand::Test { file, mailbox }) => {
            let settings = load_offline(&cli.config)?;
            let raw =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let text = rules_test(&settings, &raw, mailbox.as_deref())?;
            print!("{text}");
            Ok(0)
        }
        Command::Outbox(OutboxCommand::List { all }) => {
            let settings = load_offline(&cli.config)?;
            let store = open_store(&settings).await?;
            let states: &[JobState] = if all {
                &[]
            } else {
                &[
                    JobState::Pending,
                    JobState::InFlight,
                    JobState::Failed,
                    JobState::Uncertain,
                ]
            };
            let jobs = store.jobs(states).await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:>6}  {:<10}  {:<16}  {:<8}  {:>7}  {:>8}  ERROR",
                "JOB", "STATE", "KIND", "CHAT", "TICKET", "ATTEMPTS"
            )?;
            for j in jobs {
                writeln!(
                    out,
                    "{:>6}  {:<10}  {:<16}  {:<8}  {:>7}  {:>8}  {}",
                    j.id,
                    j.state.as_str(),
                    j.spec.kind(),
                    j.spec.platform().map_or("", |p| p.as_str()),
                    j.ticket.map(|t| t.to_string()).unwrap_or_default(),
                    j.attempts,
                    j.last_error.unwrap_or_default()
                )?;
            }
            store.close().await;
            Ok(0)
        }
        Command::Outbox(OutboxCommand::Retry { id, actor }) => {
            let settings = load_offline(&cli.config)?;
            let store = open_store(&settings).await?;
            let actor = Actor::Agent(cli_agent(actor.as_deref())?);
            let requeued = store.requeue_job(id, &actor, now_ms()).await?;
            store.close().await;
            match requeued {
                Requeued::Queued(job) => {
                    println!(
                        "job {id} ({}{}) queued again; the running daemon picks it up within a second",
                        job.spec.kind(),
                        job.ticket
                            .map(|t| format!(", ticket {t}"))
                            .unwrap_or_default()
                    );
                    Ok(0)
                }
                Requeued::NoSuchJob => {
                    eprintln!(
                        "outbox retry: there is no job {id} (see `mailroom outbox list --all`)"
                    );
                    Ok(1)
                }
                Requeued::NotFailed(state) => {
                    eprintln!(
                        "outbox retry: job {id} is {}, not failed; only failed jobs are queued again",
                        state.as_str()
                    );
                    Ok(1)
                }
                Requeued::Reply => {
                    eprintln!(
                        "outbox retry: job {id} is a reply; a reply is never sent again from the outbox. \
                         Check the thread (or `mailroom tickets show`) for why it failed, and answer again with a new reply."
                    );
                    Ok(1)
                }
            }
        }
    }
}

/// A configuration error exits with code 2 and the full list of problems.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigInvalid(pub crate::config::ConfigErrors);

fn load(path: &Path) -> anyhow::Result<Settings> {
    Settings::load(path).map_err(|e| anyhow::Error::new(ConfigInvalid(e)))
}

/// Commands that only use the database need no server secrets.
fn load_offline(path: &Path) -> anyhow::Result<Settings> {
    Settings::load_offline(path).map_err(|e| anyhow::Error::new(ConfigInvalid(e)))
}

/// `mailroom rules test`'s report for one raw email.
fn rules_test(settings: &Settings, raw: &[u8], mailbox: Option<&str>) -> anyhow::Result<String> {
    use crate::bridge::routing::{explain_text, mailbox_of};
    let parsed = crate::mail::parse::parse_email(raw);
    let mailbox = match mailbox {
        Some(m) => MailboxName::parse(m).map_err(|e| anyhow::anyhow!("--mailbox: {e}"))?,
        None => mailbox_of(settings, &parsed)
            .cloned()
            .context("no [[mailbox]] configured")?,
    };
    if settings.mailbox(&mailbox).is_none() {
        bail!("--mailbox: no [[mailbox]] is named {mailbox}");
    }
    Ok(explain_text(settings, &mailbox, &parsed))
}

fn check_config(path: &Path) -> i32 {
    match Settings::load(path) {
        Ok(s) => {
            println!("{}: ok: {}", path.display(), s.summary());
            0
        }
        Err(e) => {
            eprint!("{e}");
            2
        }
    }
}

async fn open_store(settings: &Settings) -> anyhow::Result<SqlStore> {
    let store = SqlStore::open(&settings.database)
        .await
        .with_context(|| format!("opening {}", settings.database.url))?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

/// A content type from a file name, for attachments given on the command line.
fn guess_content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "zip" => "application/zip",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

fn fmt_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// The ticket subcommands, writing to `out` (tests capture it).
pub async fn tickets(app: &App, cmd: TicketsCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = app.store.as_ref();
    let act =
        |args: &ActArgs, event: TicketEvent| -> anyhow::Result<(TicketId, Actor, TicketEvent)> {
            Ok((args.ticket()?, Actor::Agent(args.agent()?), event))
        };
    let action = match &cmd {
        TicketsCommand::Claim(a) => Some(act(a, TicketEvent::Claim(a.agent()?))?),
        TicketsCommand::Unclaim(a) => Some(act(a, TicketEvent::Unclaim(a.agent()?))?),
        TicketsCommand::Assign { act: a, to } => {
            let to = Agent::parse(to).map_err(|e| anyhow::anyhow!("assign: {e}"))?;
            Some(act(a, TicketEvent::Assign(to))?)
        }
        TicketsCommand::Unassign(a) => Some(act(a, TicketEvent::Unassign)?),
        TicketsCommand::Pending(a) => Some(act(a, TicketEvent::MarkPending)?),
        TicketsCommand::Close(a) => Some(act(a, TicketEvent::Close)?),
        TicketsCommand::Reopen(a) => Some(act(a, TicketEvent::Reopen)?),
        TicketsCommand::Tag { act: a, tag } => Some(act(
            a,
            TicketEvent::AddTag(Tag::parse(tag).map_err(|e| anyhow::anyhow!("{e}"))?),
        )?),
        TicketsCommand::Untag { act: a, tag } => Some(act(
            a,
            TicketEvent::RemoveTag(Tag::parse(tag).map_err(|e| anyhow::anyhow!("{e}"))?),
        )?),
        _ => None,
    };
    if let Some((id, actor, event)) = action {
        let notify = match store.ticket(id).await? {
            Some(t) => app.platforms_for(&t.mailbox),
            None => Vec::new(),
        };
        match store.apply(id, &actor, &event, &notify, now_ms()).await? {
            Applied::Changed { after, .. } => writeln!(out, "{id}: {after}")?,
            Applied::Unchanged => writeln!(out, "{id}: nothing to change")?,
            Applied::Refused(r) => bail!("{id}: {r}"),
            Applied::NoSuchTicket => bail!("no ticket {id}"),
        }
        return Ok(());
    }
    match cmd {
        TicketsCommand::Claim(_)
        | TicketsCommand::Unclaim(_)
        | TicketsCommand::Assign { .. }
        | TicketsCommand::Unassign(_)
        | TicketsCommand::Pending(_)
        | TicketsCommand::Close(_)
        | TicketsCommand::Reopen(_)
        | TicketsCommand::Tag { .. }
        | TicketsCommand::Untag { .. } => {}
        TicketsCommand::Reply {
            act,
            name,
            message,
            message_file,
            attach,
        } => {
            let body = match (message, message_file) {
                (Some(m), _) => m,
                (None, Some(p)) if p.as_os_str() == "-" => {
                    std::io::read_to_string(std::io::stdin())
                        .context("reading the reply from standard input")?
                }
                (None, Some(p)) => std::fs::read_to_string(&p)
                    .with_context(|| format!("--message-file {}", p.display()))?,
                (None, None) => bail!("give --message or --message-file"),
            };
            let mut attachments = Vec::new();
            for path in attach {
                let data =
                    std::fs::read(&path).with_context(|| format!("--attach {}", path.display()))?;
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "attachment".into());
                attachments.push(OutboundAttachment {
                    content_type: guess_content_type(&name).into(),
                    name,
                    data,
                });
            }
            let queued = queue_reply(
                app,
                ReplyRequest {
                    ticket: act.ticket()?,
                    agent: act.agent()?,
                    agent_name: name,
                    body_markdown: body,
                    attachments,
                    undo_window: std::time::Duration::ZERO,
                    // The CLI asks nobody: list or automatic mail without a
                    // person to answer is refused (say so in chat with `!reply!`).
                    confirmed: false,
                },
            )
            .await?;
            let to: Vec<String> = queued
                .to
                .iter()
                .chain(queued.cc.iter())
                .map(|p| p.to_string())
                .collect();
            writeln!(
                out,
                "{}: reply {} queued to {}; the running mailroom sends it",
                act.ticket()?,
                queued.message_id,
                to.join(", ")
            )?;
        }
        TicketsCommand::List(args) => {
            let mailbox = args
                .mailbox
                .as_deref()
                .map(MailboxName::parse)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--mailbox: {e}"))?;
            // The default list is the queue: snoozed tickets are out of it
            // until they wake. A status asked for lists all of that status.
            let snoozed = match args.status {
                None => Some(false),
                Some(StatusArg::Snoozed) => Some(true),
                Some(_) => None,
            };
            let filter = TicketFilter {
                status: args.status.and_then(StatusArg::status),
                mailbox,
                owner: None,
                limit: Some(args.limit),
                snoozed,
            };
            let list = store.list_tickets(&filter).await?;
            writeln!(
                out,
                "{:>6}  {:<8}  {:<18}  {:<28}  {:<20}  SUBJECT",
                "ID", "MAILBOX", "STATUS", "CUSTOMER", "OWNER"
            )?;
            for t in &list {
                writeln!(
                    out,
                    "{:>6}  {:<8}  {:<18}  {:<28}  {:<20}  {}",
                    t.id.to_string(),
                    t.mailbox.as_str(),
                    match t.snooze {
                        Some(_) => format!("{} (snoozed)", t.state.status().as_str()),
                        None => t.state.status().as_str().to_owned(),
                    },
                    t.customer.as_str(),
                    t.state.owner().map(|o| o.as_str()).unwrap_or("-"),
                    t.subject
                )?;
            }
            writeln!(
                out,
                "{} ticket{}",
                list.len(),
                if list.len() == 1 { "" } else { "s" }
            )?;
        }
        TicketsCommand::Show { id } => {
            let id = TicketId::parse(&id)?;
            let Some(t) = store.ticket(id).await? else {
                bail!("no ticket {id}");
            };
            writeln!(out, "Ticket {}  [{}]  {}", t.id, t.mailbox, t.subject)?;
            writeln!(out, "Status:   {}", t.state)?;
            writeln!(out, "Priority: {}", t.priority)?;
            writeln!(out, "Customer: {}", t.customer)?;
            let tags: Vec<String> = t.tags.iter().map(|t| t.to_string()).collect();
            writeln!(
                out,
                "Tags:     {}",
                if tags.is_empty() {
                    "-".to_owned()
                } else {
                    tags.join(", ")
                }
            )?;
            writeln!(out, "Created:  {}", fmt_time(t.created_at_ms))?;
            writeln!(out, "Updated:  {}", fmt_time(t.updated_at_ms))?;
            writeln!(out, "\nMessages:")?;
            for e in store.emails(id).await? {
                let arrow = match e.direction {
                    crate::domain::email::Direction::Inbound => "←",
                    crate::domain::email::Direction::Outbound => "→",
                };
                let by = e
                    .author
                    .as_ref()
                    .map(|a| format!(" by {a}"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "  {arrow} {}  {:<9}  {}{by}  {}  ({} bytes, {})",
                    fmt_time(e.stored_at_ms),
                    e.state.as_str(),
                    e.from,
                    e.subject,
                    e.size,
                    e.message_id
                )?;
            }
            writeln!(out, "\nHistory:")?;
            for a in store.audit_log(id).await? {
                writeln!(
                    out,
                    "  {}  {:<28}  {:<16}  {}",
                    fmt_time(a.at_ms),
                    a.actor.to_string(),
                    a.action,
                    a.details
                )?;
            }
        }
        TicketsCommand::Export { id, format, output } => {
            let id = TicketId::parse(&id)?;
            if store.ticket(id).await?.is_none() {
                bail!("no ticket {id}");
            }
            let emails = store.emails(id).await?;
            match format {
                ExportFormat::Mbox => {
                    let mut buf = Vec::new();
                    for e in &emails {
                        if let Some(raw) = store.raw_email(e.id).await? {
                            let at = e.sent_at.map(|s| s * 1000).unwrap_or(e.stored_at_ms);
                            write_mbox_entry(&mut buf, e.from.address.as_str(), at, &raw);
                        }
                    }
                    match output {
                        Some(path) => std::fs::write(&path, &buf)
                            .with_context(|| format!("writing {}", path.display()))?,
                        None => out.write_all(&buf)?,
                    }
                }
                ExportFormat::Eml => {
                    let dir =
                        output.unwrap_or_else(|| PathBuf::from(format!("ticket-{}", id.get())));
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    for (i, e) in emails.iter().enumerate() {
                        if let Some(raw) = store.raw_email(e.id).await? {
                            let path =
                                dir.join(format!("{:03}-{}.eml", i + 1, e.direction.as_str()));
                            std::fs::write(&path, raw)
                                .with_context(|| format!("writing {}", path.display()))?;
                            writeln!(out, "{}", path.display())?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// One mboxrd entry: a `From ` separator line, the message with line endings
/// as LF and `From ` lines (at any `>` depth) quoted with one more `>`.
pub fn write_mbox_entry(buf: &mut Vec<u8>, sender: &str, at_ms: i64, raw: &[u8]) {
    let date = jiff::Timestamp::from_millisecond(at_ms)
        .map(|t| t.strftime("%a %b %e %H:%M:%S %Y").to_string())
        .unwrap_or_else(|_| "Thu Jan  1 00:00:00 1970".into());
    buf.extend_from_slice(format!("From {sender} {date}\n").as_bytes());
    let text = raw
        .strip_suffix(b"\r\n")
        .or_else(|| raw.strip_suffix(b"\n"))
        .unwrap_or(raw);
    for line in text.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let unquoted = line
            .iter()
            .position(|b| *b != b'>')
            .map(|p| &line[p..])
            .unwrap_or(&[]);
        if unquoted.starts_with(b"From ") {
            buf.push(b'>');
        }
        buf.extend_from_slice(line);
        buf.push(b'\n');
    }
    buf.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_entries_quote_from_lines_and_end_with_a_blank_line() {
        let mut buf = Vec::new();
        write_mbox_entry(
            &mut buf,
            "a@b.c",
            0,
            b"Subject: x\r\n\r\nFrom here\r\n>From there\r\n",
        );
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.starts_with("From a@b.c Thu Jan  1 00:00:00 1970\n"),
            "{text}"
        );
        assert!(text.contains("\n>From here\n"));
        assert!(text.contains("\n>>From there\n"));
        assert!(text.ends_with("\n\n"));
        assert!(!text.contains('\r'));
    }

    #[test]
    fn the_imap_wire_log_stays_off_even_when_asked_for() {
        use std::io::Write;
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl Write for Capture {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        for asked in [
            "trace",
            "async_imap=trace",
            "async_imap::imap_stream=trace,trace",
        ] {
            let out = Capture::default();
            let writer = out.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(log_filter(Some(asked), "info"))
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                tracing::trace!(target: "async_imap::imap_stream", "LOGIN \"u\" \"hunter2\"");
                tracing::trace!(target: "async_imap::client", "still logged");
            });
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            assert!(!text.contains("hunter2"), "{asked}: {text}");
            assert!(
                text.contains("still logged"),
                "{asked}: other targets work: {text}"
            );
        }
    }

    #[test]
    fn every_subcommand_has_help() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let mut cmd = Cli::command();
        for sub in cmd.get_subcommands_mut() {
            assert!(
                sub.get_about().is_some(),
                "{} has no help text",
                sub.get_name()
            );
        }
    }
}
