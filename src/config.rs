//! Server configuration: command-line flags and environment variables → [`Config`].
//!
//! Flags win over environment variables, which win over the defaults. Parsing is pure (arguments and a variable
//! lookup are passed in), so it is tested without touching the process environment.
//!
//! **One definition per option.** Every option is one `Opt` in the `SECTIONS` table below: its flag, its
//! environment variable, its help line and the field it sets (whose `Kind` also says how the value is parsed).
//! `--help`, the environment mapping and the defaults shown are all generated from that table; the default itself
//! is the field's value in [`Config::default`], read through the same field accessor, so it is written once. To
//! add an option: add its field (and its default) to [`Config`] or [`IngestConfig`], then one `Opt`. The
//! table-driven tests at the bottom check every option's flag, variable, default and a refused value (an option of
//! `Kind::Custom` also needs a line in their `custom_samples`, or they fail).
//!
//! Settings derived from the options (what the pollers and the HTTP client are given) are built here too
//! ([`IngestConfig::poll_options`], [`IngestConfig::http_client_config`]), so the rest of the server only reads
//! them.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::broker::NatsConfig;
use crate::http::{self, HttpClientConfig};
use crate::hub::SubscriptionConfig;
use crate::ingest::PollOptions;
use crate::ingest::growth::DEFAULT_MAX_GROWTH_PER_SECOND;
use crate::ingest::issuers::DEFAULT_BUDGET_BYTES as DEFAULT_ISSUER_CACHE_BYTES;
use crate::ingest::resume;
use crate::message::BuildLimits;

/// What the process does: follow the CT logs, or relay a JetStream stream (`certstream relay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Follows the CT logs and serves (and with `--nats-url`, publishes to JetStream).
    Ingest,
    /// Polls no log: serves what an ingester published to the JetStream stream (needs `--nats-url`). Several
    /// relays may listen on one port (`SO_REUSEPORT`).
    Relay,
}

/// The subcommand that selects [`Mode::Relay`].
const RELAY_COMMAND: &str = "relay";

/// Everything the server needs to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Ingester or relay (the first argument `relay`).
    pub mode: Mode,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Frames queued per client before the oldest is dropped (docs/wire-format.md §7.3: 256).
    pub ring_size: usize,
    /// Open connections (WebSocket or HTTP) accepted at once; beyond it new connections are closed at accept.
    pub max_connections: usize,
    /// Open connections accepted at once from one IP address; beyond it new connections are closed at accept.
    pub max_connections_per_ip: usize,
    /// Bytes of frames queued per client before the oldest is dropped (a second bound next to `ring_size`).
    pub client_queue_bytes: usize,
    /// File descriptors kept free for the CT log connections: clients are refused before they can take these.
    pub descriptor_reserve: usize,
    /// Messages larger than this (compact JSON) are left out of `/latest.json` and the example routes.
    pub max_latest_bytes: usize,
    /// Bytes of the last published messages (all three variants) kept so that server-sent events clients can
    /// resume with `Last-Event-ID`; 0 keeps none.
    pub replay_bytes: usize,
    /// Requests per second served on each expensive operational route (`/stats`, `/metrics`, `/latest.json`,
    /// the example routes); more get `429`.
    pub ops_rate: usize,
    /// Interval of the `heartbeat` message sent on every stream; `None` (the default) sends none.
    pub heartbeat: Option<Duration>,
    /// How long ingestion waits for a client whose socket stays full before it stops waiting for it (the client
    /// then loses its oldest messages when its queue is full); see `hub::admission`.
    pub slow_client_grace: Duration,
    /// Interval of the server's WebSocket pings.
    pub ping_interval: Duration,
    /// A connection whose writes make no progress for this long is closed.
    pub write_stall_timeout: Duration,
    /// Time a client has to send a complete HTTP request head.
    pub request_head_timeout: Duration,
    /// Upper bound of the graceful shutdown (close frames flushed, close replies awaited).
    pub shutdown_grace: Duration,
    /// Bytes of log lines waiting for stdout; beyond it lines are dropped and counted.
    pub log_buffer: usize,
    /// Time allowed to write a whole plain-HTTP response.
    pub http_write_timeout: Duration,
    /// Time a WebSocket client has to finish a message once its first byte arrived.
    pub message_timeout: Duration,
    /// Bytes all unfinished WebSocket client messages may hold together.
    pub partial_message_budget: usize,
    /// Control frames (pings, pongs) accepted per second from one client, on average and in a burst.
    pub control_frames_per_second: u32,
    /// Idle time before TCP keepalive probes a silent WebSocket peer (`None`: no keepalive).
    pub tcp_keepalive: Option<Duration>,
    /// The access-token file: with it, the streams and the latest messages need one of its tokens (`None`, the
    /// default: open to all).
    pub auth_tokens: Option<PathBuf>,
    /// With `auth_tokens`, `/stats` and `/metrics` need a token too.
    pub auth_metrics: bool,
    /// Filter limits and the deduplication window (README "Filters").
    pub subscriptions: SubscriptionConfig,
    /// Which CT logs to follow, and how.
    pub ingest: IngestConfig,
    /// Publishing every message to NATS JetStream (off unless `--nats-url` is given).
    pub nats: NatsConfig,
}

/// Which CT logs to follow (the log list) and how to poll them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestConfig {
    /// A custom log list (an `http(s)://` URL or a file path) instead of Chrome's signed list.
    pub log_list: Option<String>,
    /// The detached signature of the custom list (URL or path), checked with Google's list-signing key; without
    /// it a custom list is trusted as it is.
    pub log_list_signature: Option<String>,
    /// Also follow the logs of Apple's list (merged, deduplicated by log ID, the first list winning).
    pub apple_log_list: bool,
    /// Also follow pending logs.
    pub include_pending: bool,
    /// How often the log list is fetched again.
    pub log_list_refresh: Duration,
    /// Largest log list (or signature) accepted, in bytes, from a file or a URL.
    pub log_list_max_size: usize,
    /// Deadline for loading the list (and its signature) from a file or a URL.
    pub log_list_timeout: Duration,
    /// Start this many entries before each log's current size (0: only new certificates).
    pub start_back: u64,
    /// How often a caught-up log is polled.
    pub poll_interval: Duration,
    /// Entries per second a log may grow before its tree heads count as implausible (then followed at that rate).
    pub max_log_growth: u64,
    /// Byte budget of the tiled logs' issuer cache.
    pub issuer_cache_bytes: usize,
    /// Byte budgets of message building: chain cache, largest certificate, chain certificate and message.
    pub build_limits: BuildLimits,
    /// Fixed addresses for `(host, port)` of CT logs and lists, bypassing DNS (like curl's `--resolve`).
    pub resolve: Vec<(String, u16, SocketAddr)>,
    /// A get-entries body may hold this many bytes per entry asked for (see `ct::get_entries::body_limit`).
    pub get_entries_bytes_per_entry: usize,
    /// Where each log's next index is saved, to resume there after a restart (`None`: no resume).
    pub state_file: Option<PathBuf>,
    /// A saved index further behind than this many entries starts from the log's current size instead.
    pub max_resume_backlog: u64,
    /// How often the positions are saved (and at shutdown).
    pub state_save_interval: Duration,
    /// An unreadable or corrupt state file is logged and every log starts fresh, instead of refusing to start.
    pub ignore_bad_state_file: bool,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            log_list: None,
            log_list_signature: None,
            apple_log_list: false,
            include_pending: false,
            log_list_refresh: Duration::from_secs(3600),
            log_list_max_size: 4 << 20,
            log_list_timeout: Duration::from_secs(10),
            start_back: 0,
            poll_interval: Duration::from_secs(2),
            max_log_growth: DEFAULT_MAX_GROWTH_PER_SECOND,
            issuer_cache_bytes: DEFAULT_ISSUER_CACHE_BYTES,
            build_limits: BuildLimits::default(),
            resolve: Vec::new(),
            get_entries_bytes_per_entry: certstream_ct::get_entries::DEFAULT_BYTES_PER_ENTRY,
            state_file: None,
            max_resume_backlog: resume::DEFAULT_MAX_RESUME_BACKLOG,
            state_save_interval: resume::DEFAULT_SAVE_INTERVAL,
            ignore_bad_state_file: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Mode::Ingest,
            listen: SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 8080),
            ring_size: 256,
            max_connections: 50_000,
            max_connections_per_ip: 1_000,
            client_queue_bytes: 8 << 20,
            descriptor_reserve: 256,
            max_latest_bytes: 1 << 20,
            replay_bytes: 64 << 20,
            ops_rate: 20,
            heartbeat: None,
            slow_client_grace: crate::hub::admission::DEFAULT_SLOW_CLIENT_GRACE,
            ping_interval: Duration::from_secs(30),
            write_stall_timeout: Duration::from_secs(60),
            request_head_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(1),
            log_buffer: 1 << 20,
            http_write_timeout: Duration::from_secs(10),
            message_timeout: Duration::from_secs(10),
            partial_message_budget: 64 << 20,
            control_frames_per_second: 20,
            tcp_keepalive: Some(Duration::from_secs(60)),
            auth_tokens: None,
            auth_metrics: false,
            subscriptions: SubscriptionConfig {
                filter_limits: crate::filter::Limits::default(),
                dedup_window: Duration::from_secs(600),
                dedup_bytes: 16 << 20,
            },
            ingest: IngestConfig::default(),
            nats: NatsConfig::default(),
        }
    }
}

impl Config {
    /// Whether an option only an ingester uses differs from its default (the CT logs', resume's, and the stream's
    /// creation and publishing): a relay warns that it ignores them (the packaged environment file sets
    /// `CERTSTREAM_STATE_FILE`, so they are not refused).
    pub fn sets_ingester_options(&self) -> bool {
        let (nats, default) = (&self.nats, NatsConfig::default());
        let publishing = |n: &NatsConfig| {
            (
                n.max_age,
                n.max_bytes,
                n.duplicate_window,
                n.buffer_bytes,
                n.drain_timeout,
            )
        };
        self.ingest != IngestConfig::default() || publishing(nats) != publishing(&default)
    }
}

/// The interval of `--heartbeat` once it is on.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);

/// The log filter when `RUST_LOG` is not set.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Fixed poller settings, not options: get-entries requests in flight per log while it is behind, and how long
/// new entries wait in a tiled log's partial tip tile before it is fetched ([`PollOptions`] says why).
const MAX_GET_ENTRIES_IN_FLIGHT: usize = 4;
const PARTIAL_TILE_MIN_AGE: Duration = Duration::from_secs(3);

impl IngestConfig {
    /// What every poller is given.
    pub fn poll_options(&self) -> PollOptions {
        PollOptions {
            start_back: self.start_back,
            poll_interval: self.poll_interval,
            request_timeout: http::DEFAULT_TIMEOUT,
            max_in_flight: MAX_GET_ENTRIES_IN_FLIGHT,
            partial_tile_min_age: PARTIAL_TILE_MIN_AGE,
            get_entries_bytes_per_entry: self.get_entries_bytes_per_entry,
            max_growth_per_second: self.max_log_growth,
        }
    }

    /// The HTTP client for logs and lists: the client's defaults plus the `--resolve` overrides.
    pub fn http_client_config(&self) -> HttpClientConfig {
        let mut http = HttpClientConfig::default();
        for (host, port, addr) in &self.resolve {
            http.resolve_overrides
                .entry((host.clone(), *port))
                .or_default()
                .push(*addr);
        }
        http
    }
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Serve with this configuration (boxed: it dwarfs the other variants).
    Run(Box<Config>),
    /// Print the usage text ([`help`]).
    Help,
    /// Print the version.
    Version,
}

/// A flag or variable that could not be understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// One option: where it comes from, what it means, and the field it sets.
struct Opt {
    /// The command-line flag, `--name`; also `--name=value`.
    flag: &'static str,
    /// The environment variable, used when the flag is absent.
    env: &'static str,
    /// One line for `--help`, without the variable and the default (they are added).
    help: &'static str,
    /// The field set, and so the kind of value.
    kind: Kind,
}

/// The kinds of value, each with its parser and its rendering in `--help`. The common kinds name only the field:
/// reading the field of `Config::default()` gives the default shown.
enum Kind {
    /// `N`: a whole number above 0 ([`Input::count`]).
    Count(fn(&mut Config) -> &mut dyn CountField),
    /// `SIZE`: a byte size above 0 ([`Input::size`]).
    Size(fn(&mut Config) -> &mut usize),
    /// `DURATION`: above 0, at most a year ([`Input::duration`]).
    Duration(fn(&mut Config) -> &mut Duration),
    /// A switch: the bare flag turns it on; `--flag=off` and the variable take on/off ([`Input::switch`]).
    Switch(fn(&mut Config) -> &mut bool),
    /// Anything else: its own value name, parser and default rendering.
    Custom {
        /// Shown after the flag in `--help`; `None`: a switch (no value follows the flag).
        value: Option<&'static str>,
        /// Parses the text and sets the field.
        apply: fn(&mut Config, Input<'_>) -> Result<(), ConfigError>,
        /// The field's value as it would be typed, or `None` when unset (nothing is shown).
        show: fn(&Config) -> Option<String>,
    },
}

/// The options, by section of `--help`.
const SECTIONS: [(&str, &[Opt]); 6] = [
    ("Options", SERVER_OPTIONS),
    ("Access tokens", AUTH_OPTIONS),
    ("Certificate Transparency logs", LOG_OPTIONS),
    ("Resume after a restart", RESUME_OPTIONS),
    ("Other", OTHER_OPTIONS),
    ("NATS JetStream", NATS_OPTIONS),
];

const SERVER_OPTIONS: &[Opt] = &[
    Opt {
        flag: "--listen",
        env: "WEBSOCKET_LISTEN",
        help: "address to serve on, Go style: :PORT (all interfaces), 127.0.0.1:PORT, [::1]:PORT",
        kind: Kind::Custom {
            value: Some("ADDR"),
            apply: |c, v| {
                c.listen = parse_listen(v.text)?;
                Ok(())
            },
            show: |c| Some(listen_text(c.listen)),
        },
    },
    Opt {
        flag: "--ring-size",
        env: "CERTSTREAM_RING_SIZE",
        help: "messages queued per client before the oldest is dropped",
        kind: Kind::Count(|c| &mut c.ring_size),
    },
    Opt {
        flag: "--max-connections",
        env: "CERTSTREAM_MAX_CONNECTIONS",
        help: "open connections at once",
        kind: Kind::Count(|c| &mut c.max_connections),
    },
    Opt {
        flag: "--max-connections-per-ip",
        env: "CERTSTREAM_MAX_CONNECTIONS_PER_IP",
        help: "open connections at once from one address",
        kind: Kind::Count(|c| &mut c.max_connections_per_ip),
    },
    Opt {
        flag: "--client-queue-bytes",
        env: "CERTSTREAM_CLIENT_QUEUE_BYTES",
        help: "bytes queued per client before the oldest messages are dropped",
        kind: Kind::Size(|c| &mut c.client_queue_bytes),
    },
    Opt {
        flag: "--fd-reserve",
        env: "CERTSTREAM_FD_RESERVE",
        help: "file descriptors kept free for CT log connections: clients are refused before the open-files \
               limit minus N",
        kind: Kind::Count(|c| &mut c.descriptor_reserve),
    },
    Opt {
        flag: "--max-latest-bytes",
        env: "CERTSTREAM_MAX_LATEST_BYTES",
        help: "larger messages are left out of /latest.json and the example routes",
        kind: Kind::Size(|c| &mut c.max_latest_bytes),
    },
    Opt {
        flag: "--replay-bytes",
        env: "CERTSTREAM_REPLAY_BYTES",
        help: "bytes of the last messages kept so that server-sent events clients resume without a gap \
               (Last-Event-ID); at ~2,000 messages/s, 64MiB is about 7 s; kept while an SSE client is connected and \
               for a minute after; 0 keeps none",
        kind: Kind::Custom {
            value: Some("SIZE"),
            apply: |c, v| {
                c.replay_bytes = match v.text {
                    "0" => 0,
                    _ => v.size()?,
                };
                Ok(())
            },
            show: |c| Some(size_text(c.replay_bytes)),
        },
    },
    Opt {
        flag: "--ops-rate",
        env: "CERTSTREAM_OPS_RATE",
        help: "requests per second on each of /stats, /metrics, /latest.json and the example routes (burst: \
               2 s worth); more get 429",
        kind: Kind::Count(|c| &mut c.ops_rate),
    },
    Opt {
        flag: "--heartbeat",
        env: "CERTSTREAM_HEARTBEAT",
        // The interval is HEARTBEAT_INTERVAL (a test holds the two together).
        help: "send a heartbeat message every 30s on every stream",
        kind: Kind::Custom {
            value: None,
            apply: |c, v| {
                c.heartbeat = v.switch()?.then_some(HEARTBEAT_INTERVAL);
                Ok(())
            },
            show: |c| Some(if c.heartbeat.is_some() { "on" } else { "off" }.to_owned()),
        },
    },
    Opt {
        flag: "--http-write-timeout",
        env: "CERTSTREAM_HTTP_WRITE_TIMEOUT",
        help: "time to write a whole HTTP response, then the connection is closed",
        kind: Kind::Duration(|c| &mut c.http_write_timeout),
    },
    Opt {
        flag: "--message-timeout",
        env: "CERTSTREAM_MESSAGE_TIMEOUT",
        help: "time a WebSocket client has to finish a message it started, then close 1008",
        kind: Kind::Duration(|c| &mut c.message_timeout),
    },
    Opt {
        flag: "--partial-message-budget",
        env: "CERTSTREAM_PARTIAL_MESSAGE_BUDGET",
        help: "bytes all unfinished client messages may hold together; a client growing past it is closed with \
               1008",
        kind: Kind::Size(|c| &mut c.partial_message_budget),
    },
    Opt {
        flag: "--control-frames-per-second",
        env: "CERTSTREAM_CONTROL_FRAMES_PER_SECOND",
        help: "pings and pongs accepted per client per second (also the burst); beyond, close 1008",
        kind: Kind::Count(|c| &mut c.control_frames_per_second),
    },
    Opt {
        flag: "--tcp-keepalive",
        env: "CERTSTREAM_TCP_KEEPALIVE",
        help: "idle time before TCP keepalive probes a silent client (every 10 s, 6 probes: a vanished peer is \
               closed after about 2 min; silent but present clients are never closed); 0 turns it off",
        kind: Kind::Custom {
            value: Some("DURATION"),
            apply: |c, v| {
                c.tcp_keepalive = match v.text {
                    "0" | "off" => None,
                    _ => Some(v.duration()?),
                };
                Ok(())
            },
            show: |c| {
                Some(
                    c.tcp_keepalive
                        .map_or_else(|| "0".to_owned(), duration_text),
                )
            },
        },
    },
    Opt {
        flag: "--slow-client-grace",
        env: "CERTSTREAM_SLOW_CLIENT_GRACE",
        help: "ingestion slows down rather than drop messages for clients that keep up; a client whose socket \
               stays full this long does not keep up: it is no longer waited for and loses its oldest queued \
               messages",
        kind: Kind::Duration(|c| &mut c.slow_client_grace),
    },
    Opt {
        flag: "--filter-max-bytes",
        env: "CERTSTREAM_FILTER_MAX_BYTES",
        help: "bytes of one client's filter parameters (decoded); longer filters get 400",
        kind: Kind::Size(|c| &mut c.subscriptions.filter_limits.max_filter_bytes),
    },
    Opt {
        flag: "--filter-max-values",
        env: "CERTSTREAM_FILTER_MAX_VALUES",
        help: "values in one client's filter, all parameters together; more get 400",
        kind: Kind::Count(|c| &mut c.subscriptions.filter_limits.max_values),
    },
    Opt {
        flag: "--filter-max-regexes",
        env: "CERTSTREAM_FILTER_MAX_REGEXES",
        help: "distinct regexes the server holds for all clients together; a client asking for one more gets 400",
        kind: Kind::Count(|c| &mut c.subscriptions.filter_limits.max_regexes),
    },
    Opt {
        flag: "--filter-regex-size",
        env: "CERTSTREAM_FILTER_REGEX_SIZE",
        help: "bytes one regex may take once compiled; larger ones get 400",
        kind: Kind::Size(|c| &mut c.subscriptions.filter_limits.regex_size_limit),
    },
    Opt {
        flag: "--dedup-window",
        env: "CERTSTREAM_DEDUP_WINDOW",
        help: "how long a certificate is remembered for clients that asked for dedup=1",
        kind: Kind::Duration(|c| &mut c.subscriptions.dedup_window),
    },
    Opt {
        flag: "--dedup-bytes",
        env: "CERTSTREAM_DEDUP_BYTES",
        help: "bytes the deduplication window may hold (64 per certificate); beyond, the oldest are forgotten \
               early (counted)",
        kind: Kind::Size(|c| &mut c.subscriptions.dedup_bytes),
    },
];

const AUTH_OPTIONS: &[Opt] = &[
    Opt {
        flag: "--auth-tokens",
        env: "CERTSTREAM_AUTH_TOKENS",
        help: "the streams, /latest.json and the example routes need one of the tokens in FILE (one a line; \
               blank lines and # comments ignored), sent as `Authorization: Bearer TOKEN` or `?token=TOKEN`; \
               the file is reloaded when it changes and on SIGHUP. Off unless given",
        kind: Kind::Custom {
            value: Some("FILE"),
            apply: |c, v| {
                c.auth_tokens = v.non_empty().map(PathBuf::from);
                Ok(())
            },
            show: |c| c.auth_tokens.as_ref().map(|p| p.display().to_string()),
        },
    },
    Opt {
        flag: "--auth-metrics",
        env: "CERTSTREAM_AUTH_METRICS",
        help: "/stats and /metrics need a token too (needs --auth-tokens; /health stays open)",
        // A switch with its own sample in the tests: it is refused without --auth-tokens.
        kind: Kind::Custom {
            value: None,
            apply: |c, v| {
                c.auth_metrics = v.switch()?;
                Ok(())
            },
            show: |c| Some(if c.auth_metrics { "on" } else { "off" }.to_owned()),
        },
    },
];

const LOG_OPTIONS: &[Opt] = &[
    Opt {
        flag: "--log-list",
        env: "CUSTOM_LOG_LIST",
        help: "follow the logs of this v3 log list (http(s) URL or file) instead of Chrome's signed list. \
               Without a list at start-up, a compiled-in copy of Chrome's list is used; a list that later fails \
               to load or parse leaves the previous one in place",
        kind: Kind::Custom {
            value: Some("URL|PATH"),
            apply: |c, v| {
                c.ingest.log_list = v.non_empty();
                Ok(())
            },
            show: |c| c.ingest.log_list.clone(),
        },
    },
    Opt {
        flag: "--log-list-signature",
        env: "CERTSTREAM_LOG_LIST_SIGNATURE",
        help: "check the custom list against this detached signature with Google's list-signing key (for \
               mirrors of Chrome's list); without it a custom list is not signature-checked",
        kind: Kind::Custom {
            value: Some("URL|PATH"),
            apply: |c, v| {
                c.ingest.log_list_signature = v.non_empty();
                Ok(())
            },
            show: |c| c.ingest.log_list_signature.clone(),
        },
    },
    Opt {
        flag: "--apple-log-list",
        env: "CERTSTREAM_APPLE_LOG_LIST",
        help: "also follow the logs of Apple's list",
        kind: Kind::Switch(|c| &mut c.ingest.apple_log_list),
    },
    Opt {
        flag: "--include-pending",
        env: "CERTSTREAM_INCLUDE_PENDING",
        help: "also follow pending logs",
        kind: Kind::Switch(|c| &mut c.ingest.include_pending),
    },
    Opt {
        flag: "--log-list-refresh",
        env: "CERTSTREAM_LOG_LIST_REFRESH",
        help: "how often the list is fetched again",
        kind: Kind::Duration(|c| &mut c.ingest.log_list_refresh),
    },
    Opt {
        flag: "--log-list-max-size",
        env: "CERTSTREAM_LOG_LIST_MAX_SIZE",
        help: "largest list or signature accepted (file or URL); a bigger one is a failed load",
        kind: Kind::Size(|c| &mut c.ingest.log_list_max_size),
    },
    Opt {
        flag: "--log-list-timeout",
        env: "CERTSTREAM_LOG_LIST_TIMEOUT",
        help: "deadline for reading the list and its signature (a FIFO or a hung mount cannot hold the server)",
        kind: Kind::Duration(|c| &mut c.ingest.log_list_timeout),
    },
    Opt {
        flag: "--start-back",
        env: "CERTSTREAM_START_BACK",
        help: "start N entries before each log's current size (0: only new certificates)",
        kind: Kind::Custom {
            value: Some("N"),
            apply: |c, v| {
                c.ingest.start_back = v.text.parse().map_err(|_| v.is_not("a whole number"))?;
                Ok(())
            },
            show: |c| Some(c.ingest.start_back.to_string()),
        },
    },
    Opt {
        flag: "--poll-interval",
        env: "CERTSTREAM_POLL_INTERVAL",
        help: "how often a caught-up log is polled",
        kind: Kind::Duration(|c| &mut c.ingest.poll_interval),
    },
    Opt {
        flag: "--max-log-growth",
        env: "CERTSTREAM_MAX_LOG_GROWTH",
        help: "entries per second a log may grow; a tree head beyond that (10 s of it saved up) is logged and \
               followed at this rate",
        kind: Kind::Count(|c| &mut c.ingest.max_log_growth),
    },
    Opt {
        flag: "--chain-cache-bytes",
        env: "CERTSTREAM_CHAIN_CACHE_BYTES",
        help: "budget of the cache of chain certificates' JSON",
        kind: Kind::Size(|c| &mut c.ingest.build_limits.chain_cache_bytes),
    },
    Opt {
        flag: "--issuer-cache-bytes",
        env: "CERTSTREAM_ISSUER_CACHE_BYTES",
        help: "budget of the tiled logs' issuer cache",
        kind: Kind::Size(|c| &mut c.ingest.issuer_cache_bytes),
    },
    Opt {
        flag: "--max-certificate-bytes",
        env: "CERTSTREAM_MAX_CERTIFICATE_BYTES",
        help: "larger certificates are skipped unparsed (every skip is counted in /stats)",
        kind: Kind::Size(|c| &mut c.ingest.build_limits.max_certificate_bytes),
    },
    Opt {
        flag: "--max-chain-certificate-bytes",
        env: "CERTSTREAM_MAX_CHAIN_CERTIFICATE_BYTES",
        help: "larger chain certificates and issuers are left out",
        kind: Kind::Size(|c| &mut c.ingest.build_limits.max_chain_certificate_bytes),
    },
    Opt {
        flag: "--max-message-bytes",
        env: "CERTSTREAM_MAX_MESSAGE_BYTES",
        help: "entries whose message is larger are skipped (every skip is counted in /stats)",
        kind: Kind::Size(|c| &mut c.ingest.build_limits.max_message_bytes),
    },
    Opt {
        flag: "--resolve",
        env: "CERTSTREAM_RESOLVE",
        help: "connect to ADDR (an IP, or IP:PORT) for HOST:PORT instead of asking DNS",
        kind: Kind::Custom {
            value: Some("HOST:PORT:ADDR[,HOST:PORT:ADDR…]"),
            apply: |c, v| {
                c.ingest.resolve = v
                    .text
                    .split(',')
                    .filter(|item| !item.is_empty())
                    .map(parse_resolve)
                    .collect::<Result<_, _>>()?;
                Ok(())
            },
            show: |_| None,
        },
    },
    Opt {
        flag: "--get-entries-bytes-per-entry",
        env: "CERTSTREAM_GET_ENTRIES_BYTES_PER_ENTRY",
        help: "refuse a get-entries body larger than SIZE per entry asked for (the whole body may hold at least \
               4 MiB, at most 64 MiB; refusals counted in /stats `http.bodies_too_large`)",
        kind: Kind::Size(|c| &mut c.ingest.get_entries_bytes_per_entry),
    },
];

const RESUME_OPTIONS: &[Opt] = &[
    Opt {
        flag: "--state-file",
        env: "CERTSTREAM_STATE_FILE",
        help: "save each log's next index here (by log ID) and resume there after a restart, so a restart misses \
               nothing. Off unless given: the operator picks a path that survives restarts (a volume in a \
               container), and servers sharing a directory never share a file",
        kind: Kind::Custom {
            value: Some("PATH"),
            apply: |c, v| {
                c.ingest.state_file = v.non_empty().map(PathBuf::from);
                Ok(())
            },
            show: |c| {
                c.ingest
                    .state_file
                    .as_ref()
                    .map(|p| p.display().to_string())
            },
        },
    },
    Opt {
        flag: "--max-resume-backlog",
        env: "CERTSTREAM_MAX_RESUME_BACKLOG",
        help: "a log saved more than N entries behind its current size starts there instead, the skipped \
               entries logged and counted (about an hour of the busiest log)",
        kind: Kind::Count(|c| &mut c.ingest.max_resume_backlog),
    },
    Opt {
        flag: "--state-save-interval",
        env: "CERTSTREAM_STATE_SAVE_INTERVAL",
        help: "how often the positions are saved (also at shutdown); after a crash at most about two intervals \
               of entries are delivered again",
        kind: Kind::Duration(|c| &mut c.ingest.state_save_interval),
    },
    Opt {
        flag: "--ignore-bad-state-file",
        env: "CERTSTREAM_IGNORE_BAD_STATE_FILE",
        help: "start fresh when the state file is unreadable or corrupt (logged; the file is overwritten) \
               instead of refusing to start",
        kind: Kind::Switch(|c| &mut c.ingest.ignore_bad_state_file),
    },
];

const OTHER_OPTIONS: &[Opt] = &[Opt {
    flag: "--log-buffer",
    env: "CERTSTREAM_LOG_BUFFER",
    help: "log lines waiting for a slow stdout; beyond it lines are dropped and counted",
    kind: Kind::Size(|c| &mut c.log_buffer),
}];

const NATS_OPTIONS: &[Opt] = &[
    Opt {
        flag: "--nats-url",
        env: "CERTSTREAM_NATS_URL",
        help: "publish every message to the JetStream stream of this NATS server (nats://HOST:PORT, tls:// for \
               TLS; user:password@ or token@ in the URL: prefer the variable, \
               flags are visible to every local user). Off unless given; ingestion then waits for the broker's \
               acknowledgements, nothing is lost between the logs and the broker",
        kind: Kind::Custom {
            value: Some("URL"),
            apply: |c, v| {
                c.nats.url = v.non_empty().map(parse_nats_url).transpose()?;
                Ok(())
            },
            show: |c| c.nats.url.as_deref().map(crate::redact::location),
        },
    },
    Opt {
        flag: "--nats-creds",
        env: "CERTSTREAM_NATS_CREDS",
        help: "the NATS credentials file (JWT and NKey seed) to connect with",
        kind: Kind::Custom {
            value: Some("PATH"),
            apply: |c, v| {
                c.nats.creds = v.non_empty().map(PathBuf::from);
                Ok(())
            },
            show: |c| c.nats.creds.as_ref().map(|p| p.display().to_string()),
        },
    },
    Opt {
        flag: "--nats-tls-ca",
        env: "CERTSTREAM_NATS_TLS_CA",
        help: "trust the NATS server's certificate if signed by a CA of this PEM file (and require TLS)",
        kind: Kind::Custom {
            value: Some("PATH"),
            apply: |c, v| {
                c.nats.tls_ca = v.non_empty().map(PathBuf::from);
                Ok(())
            },
            show: |c| c.nats.tls_ca.as_ref().map(|p| p.display().to_string()),
        },
    },
    Opt {
        flag: "--nats-subject-prefix",
        env: "CERTSTREAM_NATS_SUBJECT_PREFIX",
        help: "messages are published on PREFIX.entries (docs/wire-format.md §10)",
        kind: Kind::Custom {
            value: Some("PREFIX"),
            apply: |c, v| {
                c.nats.subject_prefix = parse_nats_name(v.text, v.flag, true)?;
                Ok(())
            },
            show: |c| Some(c.nats.subject_prefix.clone()),
        },
    },
    Opt {
        flag: "--nats-stream",
        env: "CERTSTREAM_NATS_STREAM",
        help: "the JetStream stream: created at start if missing, else checked (its subjects must cover ours, \
               its retention must be by limits)",
        kind: Kind::Custom {
            value: Some("NAME"),
            apply: |c, v| {
                c.nats.stream = parse_nats_name(v.text, v.flag, false)?;
                Ok(())
            },
            show: |c| Some(c.nats.stream.clone()),
        },
    },
    Opt {
        flag: "--nats-max-age",
        env: "CERTSTREAM_NATS_MAX_AGE",
        help: "a stream created at start keeps messages this long",
        kind: Kind::Duration(|c| &mut c.nats.max_age),
    },
    Opt {
        flag: "--nats-max-bytes",
        env: "CERTSTREAM_NATS_MAX_BYTES",
        help: "a stream created at start keeps at most this many bytes (the oldest messages go first)",
        kind: Kind::Size(|c| &mut c.nats.max_bytes),
    },
    Opt {
        flag: "--nats-duplicate-window",
        env: "CERTSTREAM_NATS_DUPLICATE_WINDOW",
        help: "a stream created at start drops a message whose Nats-Msg-Id (log ID:index) it saw within this \
               window (what a restart publishes again)",
        kind: Kind::Duration(|c| &mut c.nats.duplicate_window),
    },
    Opt {
        flag: "--nats-buffer-bytes",
        env: "CERTSTREAM_NATS_BUFFER_BYTES",
        help: "messages not yet acknowledged by the broker, in bytes; when full, ingestion waits",
        kind: Kind::Size(|c| &mut c.nats.buffer_bytes),
    },
    Opt {
        flag: "--nats-drain-timeout",
        env: "CERTSTREAM_NATS_DRAIN_TIMEOUT",
        help: "at shutdown, how long to wait for the broker to acknowledge what it was sent (what it did not is \
               fetched again at the next start with --state-file)",
        kind: Kind::Duration(|c| &mut c.nats.drain_timeout),
    },
    Opt {
        flag: "--nats-max-replays",
        env: "CERTSTREAM_NATS_MAX_REPLAYS",
        help: "clients reading history from the stream at once (?cursor=, ?since=, Last-Event-ID); more get 503",
        kind: Kind::Count(|c| &mut c.nats.max_replays),
    },
];

/// A NATS server URL: `nats://` or `tls://`.
fn parse_nats_url(text: String) -> Result<String, ConfigError> {
    let scheme = text.split_once("://").map(|(scheme, _)| scheme);
    if !matches!(scheme, Some("nats" | "tls")) || text.ends_with("://") {
        return Err(ConfigError(format!(
            "--nats-url: {} is not a nats:// or tls:// URL",
            crate::redact::location(&text)
        )));
    }
    Ok(text)
}

/// A subject prefix (dot-separated tokens, when `dots`) or a stream name: no wildcard, no whitespace.
fn parse_nats_name(text: &str, option: &str, dots: bool) -> Result<String, ConfigError> {
    let bad_token = |token: &str| {
        token.is_empty()
            || token.contains(|c: char| c.is_whitespace() || matches!(c, '*' | '>' | '/' | '\\'))
    };
    let refused = if dots {
        text.split('.').any(bad_token)
    } else {
        bad_token(text) || text.contains('.')
    };
    if refused {
        return Err(ConfigError(format!(
            "{option}: {text:?} is not a valid NATS {}",
            if dots {
                "subject prefix"
            } else {
                "stream name"
            }
        )));
    }
    Ok(text.to_owned())
}

/// Every option, in `--help` order.
fn options() -> impl Iterator<Item = &'static Opt> {
    SECTIONS.into_iter().flat_map(|(_, options)| options)
}

/// Cross-option rules, checked once every option is set.
fn check(config: &Config) -> Result<(), ConfigError> {
    if config.auth_metrics && config.auth_tokens.is_none() {
        return Err(ConfigError(
            "--auth-metrics needs --auth-tokens (the tokens that open /stats and /metrics)".into(),
        ));
    }
    if config.mode == Mode::Relay && config.nats.url.is_none() {
        return Err(ConfigError(
            "certstream relay needs --nats-url (the JetStream stream it serves)".into(),
        ));
    }
    let ingest = &config.ingest;
    if ingest.log_list_signature.is_some() && ingest.log_list.is_none() {
        return Err(ConfigError(
            "--log-list-signature needs --log-list (Chrome's list is always signature-checked)"
                .into(),
        ));
    }
    Ok(())
}

impl Command {
    /// Parses the arguments (without the program name); `env` looks up an environment variable.
    pub fn parse<I, S>(args: I, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        // Each option's text, in table order: its variable first, then its flag overrides. Nothing is parsed
        // before the scan ends, so `--help` wins over a bad value and a flag hides a bad variable.
        let table: Vec<&Opt> = options().collect();
        let mut texts: Vec<Option<String>> = table.iter().map(|opt| env(opt.env)).collect();
        let mut args = args.into_iter().map(Into::into).peekable();
        let mode = if args.peek().is_some_and(|first| first == RELAY_COMMAND) {
            args.next();
            Mode::Relay
        } else {
            Mode::Ingest
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--help" | "-h" => return Ok(Self::Help),
                "--version" | "-V" => return Ok(Self::Version),
                _ => {}
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (arg.as_str(), None),
            };
            let Some(index) = table.iter().position(|opt| opt.flag == name) else {
                return Err(ConfigError(format!(
                    "unknown argument `{arg}` (see --help)"
                )));
            };
            texts[index] = Some(if table[index].value_name().is_some() {
                match inline.or_else(|| args.next()) {
                    Some(value) => value,
                    None => return Err(ConfigError(format!("{name} needs a value"))),
                }
            } else {
                inline.unwrap_or_else(|| "1".to_owned())
            });
        }
        let mut config = Config {
            mode,
            ..Config::default()
        };
        for (opt, text) in table.iter().zip(&texts) {
            if let Some(text) = text {
                opt.apply(&mut config, text)?;
            }
        }
        check(&config)?;
        Ok(Self::Run(Box::new(config)))
    }
}

impl Opt {
    /// What follows the flag in `--help`; `None` for a switch.
    fn value_name(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Count(_) => Some("N"),
            Kind::Size(_) => Some("SIZE"),
            Kind::Duration(_) => Some("DURATION"),
            Kind::Switch(_) => None,
            Kind::Custom { value, .. } => value,
        }
    }

    fn apply(&self, config: &mut Config, text: &str) -> Result<(), ConfigError> {
        let input = Input {
            flag: self.flag,
            text,
        };
        match self.kind {
            Kind::Count(field) => field(config).set(input.count()?),
            Kind::Size(field) => *field(config) = input.size()?,
            Kind::Duration(field) => *field(config) = input.duration()?,
            Kind::Switch(field) => *field(config) = input.switch()?,
            Kind::Custom { apply, .. } => apply(config, input)?,
        }
        Ok(())
    }

    /// The default as it would be typed: the field's value in `Config::default()`.
    fn default_text(&self) -> Option<String> {
        let mut defaults = Config::default();
        match self.kind {
            Kind::Count(field) => Some(field(&mut defaults).to_string()),
            Kind::Size(field) => Some(size_text(*field(&mut defaults))),
            Kind::Duration(field) => Some(duration_text(*field(&mut defaults))),
            Kind::Switch(field) => {
                Some(if *field(&mut defaults) { "on" } else { "off" }.to_owned())
            }
            Kind::Custom { show, .. } => show(&defaults),
        }
    }
}

/// A whole-number field; the fields differ in width.
trait CountField: fmt::Display {
    fn set(&mut self, count: usize);
}

impl CountField for usize {
    fn set(&mut self, count: usize) {
        *self = count;
    }
}

impl CountField for u64 {
    fn set(&mut self, count: usize) {
        *self = u64::try_from(count).unwrap_or(u64::MAX);
    }
}

impl CountField for u32 {
    /// Saturates: a rate beyond `u32::MAX` a second is no limit either way.
    fn set(&mut self, count: usize) {
        *self = u32::try_from(count).unwrap_or(u32::MAX);
    }
}

/// The text given for one option, and its flag (named in errors, for the variable too).
#[derive(Clone, Copy)]
struct Input<'a> {
    flag: &'static str,
    text: &'a str,
}

impl Input<'_> {
    /// The refusal every parser gives: "--flag: `text` is not …".
    fn is_not(self, what: &str) -> ConfigError {
        ConfigError(format!("{}: `{}` is not {what}", self.flag, self.text))
    }

    fn count(self) -> Result<usize, ConfigError> {
        match self.text.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(self.is_not("a positive whole number")),
        }
    }

    /// A byte size, the one rule of every byte-size option: a whole number above 0 (no budget makes sense at zero:
    /// a zero message cap would skip every entry, a zero cache refetch everything), optionally followed by
    /// `KiB`/`K`/`k` or `MiB`/`M`/`m` (powers of 1024).
    fn size(self) -> Result<usize, ConfigError> {
        let digits_end = self
            .text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(self.text.len());
        let (number, unit) = self.text.split_at(digits_end);
        let scale: usize = match unit.trim() {
            "" => 1,
            "KiB" | "K" | "k" => 1 << 10,
            "MiB" | "M" | "m" => 1 << 20,
            _ => 0,
        };
        number
            .parse::<usize>()
            .ok()
            .filter(|_| scale > 0)
            .and_then(|n| n.checked_mul(scale))
            .filter(|&n| n > 0)
            .ok_or_else(|| self.is_not("a size above 0 (bytes, or with a KiB / MiB suffix)"))
    }

    /// A duration: a positive number with a unit `ms`, `s`, `m` or `h` (seconds when none), at most
    /// [`MAX_DURATION`].
    fn duration(self) -> Result<Duration, ConfigError> {
        let bad =
            || self.is_not("a duration above 0 and at most a year, like 500ms, 30s, 10m or 1h");
        let split = self
            .text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(self.text.len());
        let (number, unit) = self.text.split_at(split);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let seconds = match unit {
            "ms" => number / 1000.0,
            "" | "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            _ => return Err(bad()),
        };
        match Duration::try_from_secs_f64(seconds) {
            Ok(duration) if !duration.is_zero() && duration <= MAX_DURATION => Ok(duration),
            _ => Err(bad()),
        }
    }

    fn switch(self) -> Result<bool, ConfigError> {
        match self.text {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" | "" => Ok(false),
            _ => Err(self.is_not("on/off")),
        }
    }

    /// The text, or `None` when it is empty (an empty variable means unset).
    fn non_empty(self) -> Option<String> {
        Some(self.text.to_owned()).filter(|text| !text.is_empty())
    }
}

/// The longest duration any option takes. Every duration becomes a deadline (`Instant::now() + d`) or a timer,
/// and `Instant + Duration` panics on overflow (`--log-list-timeout 1000000000000s`); no timeout, interval or
/// grace is meaningful beyond a year, and a year is far from any overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a listen address the way Go's `net.Listen` does: `:8080` (every interface, IPv6 and IPv4),
/// `127.0.0.1:8080`, `[::1]:8080`, `[::]:8080`, `localhost:8080`.
fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    let bad = |why: &str| ConfigError(format!("invalid listen address `{text}`: {why}"));
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port or :port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
    let ip = match host {
        "" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        _ => {
            let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
            match bare {
                Some(v6) => IpAddr::V6(
                    v6.parse()
                        .map_err(|_| bad("not an IPv6 address inside [ ]"))?,
                ),
                None if host.contains(':') => {
                    return Err(bad("an IPv6 address needs brackets: [::1]:8080"));
                }
                None => host
                    .parse()
                    .map_err(|_| bad("the host is not an IP address"))?,
            }
        }
    };
    Ok(SocketAddr::new(ip, port))
}

/// Parses one `--resolve` item, `HOST:PORT:ADDR`, where ADDR is an IP (the port stays PORT) or an IP with its own
/// port (`127.0.0.1:9`, `[::1]:9`).
fn parse_resolve(text: &str) -> Result<(String, u16, SocketAddr), ConfigError> {
    let bad = || {
        Input {
            flag: "--resolve",
            text,
        }
        .is_not("HOST:PORT:ADDR")
    };
    let (host, rest) = text.split_once(':').ok_or_else(bad)?;
    let (port, addr) = rest.split_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    let addr = match addr.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => {
            let ip = addr.trim_start_matches('[').trim_end_matches(']');
            SocketAddr::new(ip.parse().map_err(|_| bad())?, port)
        }
    };
    Ok((host.to_ascii_lowercase(), port, addr))
}

/// A listen address as `--listen` takes it: `:PORT` for every interface.
fn listen_text(addr: SocketAddr) -> String {
    if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        format!(":{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// A byte size in the largest unit that keeps it whole: `8MiB`, `256KiB`, `1000`.
fn size_text(bytes: usize) -> String {
    match bytes {
        0 => "0".to_owned(),
        _ if bytes.is_multiple_of(1 << 20) => format!("{}MiB", bytes >> 20),
        _ if bytes.is_multiple_of(1 << 10) => format!("{}KiB", bytes >> 10),
        _ => bytes.to_string(),
    }
}

/// A duration in the largest unit that keeps it whole: `1h`, `60s`, `500ms`.
fn duration_text(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis > 0 && millis.is_multiple_of(3_600_000) {
        format!("{}h", millis / 3_600_000)
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// What `--help` says before the options.
const HELP_INTRO: &str =
    "certstream: streams every new Certificate Transparency log entry as JSON over WebSocket

Usage: certstream [OPTIONS]
       certstream relay --nats-url URL [OPTIONS]

The second form polls no log: it serves the messages an ingester (the first form, with --nats-url) published to
the JetStream stream, with the same routes, filters and formats; several relays may listen on one port. The options
of the Certificate Transparency logs and of resume do not apply to it.

SIZE is a number of bytes above 0, optionally with a KiB or MiB suffix (64KiB, 8MiB).
DURATION is a number with ms, s, m or h (500ms, 30s, 1.5m, 1h), above 0 and at most a year.
";

/// Help lines wrap at this width; descriptions start at [`HELP_INDENT`].
const HELP_WIDTH: usize = 118;
const HELP_INDENT: usize = 28;

/// The usage text printed by `--help`, generated from the option table.
pub fn help() -> String {
    let mut out = HELP_INTRO.to_owned();
    for (heading, options) in SECTIONS {
        let _ = write!(out, "\n{heading}:\n");
        for opt in options {
            let usage = match opt.value_name() {
                Some(value) => format!("{} {value}", opt.flag),
                None => opt.flag.to_owned(),
            };
            let env = match opt.value_name() {
                Some(_) => format!("[env {}]", opt.env),
                None => format!("[env {}=1]", opt.env),
            };
            let default = opt.default_text().map(|text| format!("[default: {text}]"));
            let words = opt.help.split_whitespace().chain([env.as_str()]);
            push_help_entry(&mut out, &usage, words.chain(default.as_deref()));
        }
    }
    let filter = format!("[default: {DEFAULT_LOG_FILTER}]");
    let words = "log filter (tracing EnvFilter syntax)".split_whitespace();
    push_help_entry(&mut out, "RUST_LOG", words.chain([filter.as_str()]));
    push_help_entry(&mut out, "--help", ["this text"]);
    push_help_entry(&mut out, "--version", ["the version"]);
    out
}

/// One entry of `--help`: the usage on the left (on a line of its own when too long), then the words, wrapped
/// between words (so `[env NAME]` and `[default: …]` stay whole).
fn push_help_entry<'a>(out: &mut String, usage: &str, words: impl IntoIterator<Item = &'a str>) {
    let mut line = format!("  {usage}");
    // At least two spaces between the usage and the text, which is how help2man (the man page) tells them apart.
    if line.chars().count() + 2 > HELP_INDENT {
        out.push_str(&line);
        out.push('\n');
        line.clear();
    }
    let mut line_len = line.chars().count();
    line.extend(std::iter::repeat_n(' ', HELP_INDENT - line_len));
    line_len = HELP_INDENT;
    let mut first = true;
    for word in words {
        let word_len = word.chars().count();
        if !first && line_len + 1 + word_len > HELP_WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = " ".repeat(HELP_INDENT);
            line_len = HELP_INDENT;
            first = true;
        }
        if !first {
            line.push(' ');
            line_len += 1;
        }
        line.push_str(word);
        line_len += word_len;
        first = false;
    }
    out.push_str(&line);
    out.push('\n');
}
#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Command, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Command::parse(args.iter().copied(), |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn input<'a>(flag: &'static str, text: &'a str) -> Input<'a> {
        Input { flag, text }
    }

    fn run(args: &[&str], env: &[(&str, &str)]) -> Config {
        match parse(args, env) {
            Ok(Command::Run(config)) => *config,
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn go_style_listen_addresses() {
        assert_eq!(parse_listen(":8080").unwrap(), "[::]:8080".parse().unwrap());
        assert_eq!(
            parse_listen("127.0.0.1:9000").unwrap(),
            "127.0.0.1:9000".parse().unwrap()
        );
        assert_eq!(parse_listen("[::]:80").unwrap(), "[::]:80".parse().unwrap());
        assert_eq!(
            parse_listen("[::1]:80").unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert_eq!(
            parse_listen("localhost:1").unwrap(),
            "127.0.0.1:1".parse().unwrap()
        );
        for bad in [
            "8080",
            ":",
            ":99999",
            "::1:80",
            "[::1:80",
            "host.example:80",
            "1.2.3:80",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn flags_override_environment_which_overrides_defaults() {
        assert_eq!(run(&[], &[]), Config::default());
        let from_env = run(
            &[],
            &[
                ("WEBSOCKET_LISTEN", "127.0.0.1:1234"),
                ("CERTSTREAM_RING_SIZE", "8"),
            ],
        );
        assert_eq!(from_env.listen, "127.0.0.1:1234".parse().unwrap());
        assert_eq!(from_env.ring_size, 8);
        let both = run(
            &["--listen", ":9", "--ring-size=16"],
            &[("WEBSOCKET_LISTEN", "127.0.0.1:1234")],
        );
        assert_eq!(both.listen, "[::]:9".parse().unwrap());
        assert_eq!(both.ring_size, 16);
    }

    #[test]
    fn limits_and_heartbeat() {
        let config = run(
            &[
                "--max-connections",
                "10",
                "--max-connections-per-ip",
                "2",
                "--heartbeat",
                "--slow-client-grace",
                "2s",
            ],
            &[],
        );
        assert_eq!(
            (config.max_connections, config.max_connections_per_ip),
            (10, 2)
        );
        assert_eq!(config.heartbeat, Some(Duration::from_secs(30)));
        assert_eq!(config.slow_client_grace, Duration::from_secs(2));
        assert_eq!(
            run(&[], &[("CERTSTREAM_SLOW_CLIENT_GRACE", "250ms")]).slow_client_grace,
            Duration::from_millis(250)
        );
        assert_eq!(run(&[], &[("CERTSTREAM_HEARTBEAT", "off")]).heartbeat, None);
        let budgets = run(
            &[
                "--client-queue-bytes",
                "4096",
                "--fd-reserve=64",
                "--ops-rate",
                "5",
            ],
            &[("CERTSTREAM_MAX_LATEST_BYTES", "1000")],
        );
        assert_eq!(
            (
                budgets.client_queue_bytes,
                budgets.descriptor_reserve,
                budgets.max_latest_bytes,
                budgets.ops_rate
            ),
            (4096, 64, 1000, 5)
        );
        assert!(parse(&["--ops-rate", "0"], &[]).is_err());
    }

    #[test]
    fn client_deadlines_and_budgets() {
        let defaults = run(&[], &[]);
        assert_eq!(defaults.tcp_keepalive, Some(Duration::from_secs(60)));
        let config = run(
            &[
                "--http-write-timeout",
                "2s",
                "--message-timeout=500ms",
                "--partial-message-budget",
                "1000",
                "--control-frames-per-second",
                "3",
                "--tcp-keepalive",
                "0",
            ],
            &[("CERTSTREAM_MESSAGE_TIMEOUT", "1m")],
        );
        assert_eq!(config.http_write_timeout, Duration::from_secs(2));
        assert_eq!(config.message_timeout, Duration::from_millis(500));
        assert_eq!(config.partial_message_budget, 1000);
        assert_eq!(config.control_frames_per_second, 3);
        assert_eq!(config.tcp_keepalive, None);
        assert!(parse(&["--control-frames-per-second", "0"], &[]).is_err());
    }

    #[test]
    fn filter_limits_and_dedup_window() {
        let defaults = run(&[], &[]).subscriptions;
        assert_eq!(defaults.filter_limits, crate::filter::Limits::default());
        assert_eq!(
            (defaults.dedup_window, defaults.dedup_bytes),
            (Duration::from_secs(600), 16 << 20)
        );
        let config = run(
            &[
                "--filter-max-bytes=1KiB",
                "--filter-max-values",
                "8",
                "--filter-max-regexes",
                "3",
                "--filter-regex-size",
                "64k",
                "--dedup-window",
                "30s",
            ],
            &[("CERTSTREAM_DEDUP_BYTES", "1MiB")],
        )
        .subscriptions;
        assert_eq!(
            config.filter_limits,
            crate::filter::Limits {
                max_filter_bytes: 1024,
                max_values: 8,
                max_regexes: 3,
                regex_size_limit: 64 << 10,
            }
        );
        assert_eq!(
            (config.dedup_window, config.dedup_bytes),
            (Duration::from_secs(30), 1 << 20)
        );
        assert_eq!(
            run(&[], &[("CERTSTREAM_FILTER_MAX_REGEXES", "7")])
                .subscriptions
                .filter_limits
                .max_regexes,
            7
        );
        for bad in [
            &["--filter-max-values", "0"][..],
            &["--filter-max-regexes", "x"],
            &["--dedup-window", "0s"],
        ] {
            assert!(parse(bad, &[]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn log_list_and_polling_options() {
        let ingest = run(&[], &[]).ingest;
        assert_eq!(ingest, IngestConfig::default());
        assert_eq!(ingest.log_list_refresh, Duration::from_secs(3600));
        let ingest = run(
            &[
                "--include-pending",
                "--apple-log-list",
                "--log-list-refresh",
                "500ms",
                "--start-back=300",
                "--poll-interval",
                "1.5s",
                "--log-list-signature",
                "/tmp/list.sig",
            ],
            &[("CUSTOM_LOG_LIST", "http://127.0.0.1:1/log_list.json")],
        )
        .ingest;
        assert_eq!(
            ingest.log_list.as_deref(),
            Some("http://127.0.0.1:1/log_list.json")
        );
        assert_eq!(ingest.log_list_signature.as_deref(), Some("/tmp/list.sig"));
        assert!(ingest.include_pending && ingest.apple_log_list);
        assert_eq!(ingest.log_list_refresh, Duration::from_millis(500));
        assert_eq!(ingest.start_back, 300);
        assert_eq!(ingest.poll_interval, Duration::from_millis(1500));
        let bodies = run(&["--get-entries-bytes-per-entry", "1048576"], &[]).ingest;
        assert_eq!(bodies.get_entries_bytes_per_entry, 1 << 20);
        assert!(parse(&[], &[("CERTSTREAM_GET_ENTRIES_BYTES_PER_ENTRY", "0")]).is_err());
        let flag_wins = run(&["--log-list", "list.json"], &[("CUSTOM_LOG_LIST", "x")]);
        assert_eq!(flag_wins.ingest.log_list.as_deref(), Some("list.json"));
        assert_eq!(run(&[], &[("CUSTOM_LOG_LIST", "")]).ingest.log_list, None);
        assert!(parse(&["--log-list-signature", "x.sig"], &[]).is_err());
        assert!(parse(&["--start-back", "-1"], &[]).is_err());
    }

    #[test]
    fn operator_input_and_log_output_bounds() {
        let config = run(&[], &[]);
        assert_eq!(config.log_buffer, 1 << 20);
        assert_eq!(config.ingest.log_list_max_size, 4 << 20);
        assert_eq!(config.ingest.log_list_timeout, Duration::from_secs(10));
        let config = run(
            &["--log-list-max-size", "1000", "--log-list-timeout=2s"],
            &[("CERTSTREAM_LOG_BUFFER", "4096")],
        );
        assert_eq!(config.log_buffer, 4096);
        assert_eq!(config.ingest.log_list_max_size, 1000);
        assert_eq!(config.ingest.log_list_timeout, Duration::from_secs(2));
        assert!(parse(&["--log-buffer", "0"], &[]).is_err());
        assert!(parse(&["--log-list-timeout", "0s"], &[]).is_err());
    }

    #[test]
    fn byte_budgets_and_growth_cap() {
        let ingest = run(
            &[
                "--max-log-growth",
                "500",
                "--chain-cache-bytes",
                "2MiB",
                "--max-certificate-bytes=100k",
                "--max-message-bytes",
                "65536",
            ],
            &[
                ("CERTSTREAM_ISSUER_CACHE_BYTES", "1M"),
                ("CERTSTREAM_MAX_CHAIN_CERTIFICATE_BYTES", "8KiB"),
                ("CERTSTREAM_MAX_MESSAGE_BYTES", "1"),
            ],
        )
        .ingest;
        assert_eq!(ingest.max_log_growth, 500);
        assert_eq!(ingest.issuer_cache_bytes, 1 << 20);
        assert_eq!(
            ingest.build_limits,
            BuildLimits {
                chain_cache_bytes: 2 << 20,
                max_certificate_bytes: 100 << 10,
                max_chain_certificate_bytes: 8 << 10,
                max_message_bytes: 65536,
            }
        );
        for bad in ["", "0", "0MiB", "1GiB", "x", "-1", "1.5M"] {
            assert!(input("--x", bad).size().is_err(), "{bad:?}");
        }
    }

    /// Every byte-size option follows the one rule: suffixes accepted, 0 refused, SIZE in `--help`.
    #[test]
    fn every_byte_size_option_takes_a_suffix_and_refuses_zero() {
        let sized = [
            ("--client-queue-bytes", "CERTSTREAM_CLIENT_QUEUE_BYTES"),
            ("--max-latest-bytes", "CERTSTREAM_MAX_LATEST_BYTES"),
            (
                "--partial-message-budget",
                "CERTSTREAM_PARTIAL_MESSAGE_BUDGET",
            ),
            ("--log-buffer", "CERTSTREAM_LOG_BUFFER"),
            ("--log-list-max-size", "CERTSTREAM_LOG_LIST_MAX_SIZE"),
            ("--filter-max-bytes", "CERTSTREAM_FILTER_MAX_BYTES"),
            ("--filter-regex-size", "CERTSTREAM_FILTER_REGEX_SIZE"),
            ("--dedup-bytes", "CERTSTREAM_DEDUP_BYTES"),
            ("--chain-cache-bytes", "CERTSTREAM_CHAIN_CACHE_BYTES"),
            ("--issuer-cache-bytes", "CERTSTREAM_ISSUER_CACHE_BYTES"),
            (
                "--max-certificate-bytes",
                "CERTSTREAM_MAX_CERTIFICATE_BYTES",
            ),
            (
                "--max-chain-certificate-bytes",
                "CERTSTREAM_MAX_CHAIN_CERTIFICATE_BYTES",
            ),
            ("--max-message-bytes", "CERTSTREAM_MAX_MESSAGE_BYTES"),
            (
                "--get-entries-bytes-per-entry",
                "CERTSTREAM_GET_ENTRIES_BYTES_PER_ENTRY",
            ),
        ];
        for (flag, env) in sized {
            assert!(parse(&[flag, "3MiB"], &[]).is_ok(), "{flag} 3MiB");
            assert!(parse(&[], &[(env, "64k")]).is_ok(), "{env}=64k");
            assert!(parse(&[flag, "0"], &[]).is_err(), "{flag} 0");
            assert!(parse(&[], &[(env, "0KiB")]).is_err(), "{env}=0KiB");
            assert!(help().contains(&format!("{flag} SIZE")), "{flag} in --help");
        }
        let config = run(
            &["--client-queue-bytes", "2MiB", "--log-list-max-size=1M"],
            &[
                ("CERTSTREAM_MAX_LATEST_BYTES", "64KiB"),
                ("CERTSTREAM_PARTIAL_MESSAGE_BUDGET", "16M"),
                ("CERTSTREAM_LOG_BUFFER", "8k"),
                ("CERTSTREAM_GET_ENTRIES_BYTES_PER_ENTRY", "32KiB"),
            ],
        );
        assert_eq!(
            (
                config.client_queue_bytes,
                config.max_latest_bytes,
                config.partial_message_budget,
                config.log_buffer,
                config.ingest.log_list_max_size,
                config.ingest.get_entries_bytes_per_entry,
            ),
            (2 << 20, 64 << 10, 16 << 20, 8 << 10, 1 << 20, 32 << 10)
        );
    }

    #[test]
    fn durations() {
        let d = |t: &str| input("--x", t).duration();
        assert_eq!(d("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(d("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(d("30").unwrap(), Duration::from_secs(30));
        assert_eq!(d("250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "0", "0s", "1d", "h", "-1s", "1.2.3s", "1e400"] {
            assert!(d(bad).is_err(), "{bad} should be refused");
        }
        // Up to a year; beyond, refused: `Instant::now() + d` would overflow and panic.
        assert_eq!(d("8760h").unwrap(), MAX_DURATION);
        for huge in ["8761h", "1000000000000s", "18446744073709551616s"] {
            assert!(d(huge).is_err(), "{huge} should be refused");
        }
        assert!(parse(&["--log-list-timeout", "1000000000000s"], &[]).is_err());
        assert!(parse(&[], &[("CERTSTREAM_MESSAGE_TIMEOUT", "999999999h")]).is_err());
    }

    #[test]
    fn resolve_overrides() {
        let config = run(
            &[
                "--resolve",
                "ct.example:443:127.0.0.1,Log.Example:443:127.0.0.1:9,v6.example:80:[::1]",
            ],
            &[],
        );
        assert_eq!(
            config.ingest.resolve,
            [
                ("ct.example".into(), 443, "127.0.0.1:443".parse().unwrap()),
                ("log.example".into(), 443, "127.0.0.1:9".parse().unwrap()),
                ("v6.example".into(), 80, "[::1]:80".parse().unwrap()),
            ]
        );
        for bad in [
            "ct.example:443",
            ":443:127.0.0.1",
            "h:port:127.0.0.1",
            "h:1:nowhere",
        ] {
            assert!(parse_resolve(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn relay_is_the_first_argument_and_needs_a_broker() {
        let Ok(Command::Run(config)) = parse(&["relay", "--nats-url", "nats://127.0.0.1:1"], &[])
        else {
            panic!("relay with a URL");
        };
        assert_eq!(config.mode, Mode::Relay);
        let Ok(Command::Run(config)) = parse(&["--nats-url", "nats://127.0.0.1:1"], &[]) else {
            panic!("an ingester");
        };
        assert_eq!(config.mode, Mode::Ingest);
        let refused = parse(&["relay"], &[]).unwrap_err().to_string();
        assert!(refused.contains("--nats-url"), "{refused}");
        assert!(
            parse(&["--listen", ":1", "relay"], &[]).is_err(),
            "only as the first argument"
        );
        assert!(!config.sets_ingester_options());
        for ingester_only in [["--state-file", "/tmp/s"], ["--nats-max-bytes", "2048MiB"]] {
            let mut args = vec!["relay", "--nats-url", "nats://127.0.0.1:1"];
            args.extend(ingester_only);
            let Ok(Command::Run(config)) = parse(&args, &[]) else {
                panic!("{ingester_only:?}");
            };
            assert!(config.sets_ingester_options(), "{ingester_only:?}");
        }
    }

    #[test]
    fn help_version_and_errors() {
        assert_eq!(parse(&["--help"], &[]), Ok(Command::Help));
        assert_eq!(
            parse(&["--listen", ":1", "--version"], &[]),
            Ok(Command::Version)
        );
        assert!(
            parse(&["--bogus"], &[])
                .unwrap_err()
                .to_string()
                .contains("--bogus")
        );
        assert!(parse(&["--listen"], &[]).is_err());
        assert!(parse(&["--ring-size", "0"], &[]).is_err());
        assert!(parse(&[], &[("CERTSTREAM_RING_SIZE", "many")]).is_err());
        let error = parse(&["--auth-metrics"], &[]).unwrap_err().to_string();
        assert!(error.contains("--auth-tokens"), "{error}");
    }

    /// A sample for one option: arguments it needs besides itself, a value that differs from the default, and a
    /// value it refuses (`None`: it takes any text).
    struct Sample {
        with: &'static [&'static str],
        good: &'static str,
        bad: Option<&'static str>,
    }

    /// The sample of every option: by kind, or from `custom_samples`.
    fn sample(opt: &Opt) -> Sample {
        let by_kind = |good, bad| Sample {
            with: &[],
            good,
            bad: Some(bad),
        };
        match opt.kind {
            Kind::Count(_) => by_kind("3", "0"),
            Kind::Size(_) => by_kind("3KiB", "0"),
            Kind::Duration(_) => by_kind("7s", "0s"),
            Kind::Switch(_) => by_kind("on", "maybe"),
            Kind::Custom { .. } => custom_samples(opt.flag),
        }
    }

    /// The samples of the options with their own parser; a new one must be added here (the tests fail otherwise).
    fn custom_samples(flag: &str) -> Sample {
        let (with, good, bad): (&'static [&'static str], _, _) = match flag {
            "--listen" => (&[], "127.0.0.1:9", Some("8080")),
            "--heartbeat" => (&[], "on", Some("maybe")),
            "--tcp-keepalive" => (&[], "0", Some("1d")),
            "--replay-bytes" => (&[], "0", Some("1x")),
            "--log-list" => (&[], "list.json", None),
            "--log-list-signature" => (&["--log-list", "list.json"], "list.sig", None),
            "--start-back" => (&[], "1000", Some("-1")),
            "--resolve" => (&[], "ct.example:443:127.0.0.1", Some("ct.example:443")),
            "--state-file" => (&[], "state.json", None),
            "--auth-tokens" => (&[], "tokens.txt", None),
            "--auth-metrics" => (&["--auth-tokens", "tokens.txt"], "on", Some("maybe")),
            "--nats-url" => (&[], "nats://127.0.0.1:4222", Some("http://127.0.0.1:4222")),
            "--nats-creds" => (&[], "user.creds", None),
            "--nats-tls-ca" => (&[], "ca.pem", None),
            "--nats-subject-prefix" => (&[], "ct.firehose", Some("ct.*")),
            "--nats-stream" => (&[], "CT", Some("C.T")),
            _ => panic!("{flag} has no sample in custom_samples"),
        };
        Sample { with, good, bad }
    }

    /// The arguments that set `opt` to `text`: a switch's flag alone when turned on.
    fn flag_args(opt: &Opt, sample: &Sample, text: &'static str) -> Vec<String> {
        let mut args: Vec<String> = sample.with.iter().map(|a| a.to_string()).collect();
        match (opt.value_name(), text) {
            (None, "on") => args.push(opt.flag.to_owned()),
            _ => args.push(format!("{}={text}", opt.flag)),
        }
        args
    }

    fn parse_owned(args: &[String], env: &[(&str, &str)]) -> Result<Command, ConfigError> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        parse(&args, env)
    }

    #[test]
    fn every_option_is_set_by_its_flag_and_by_its_variable_alike() {
        for opt in options() {
            let sample = sample(opt);
            let by_flag = parse_owned(&flag_args(opt, &sample, sample.good), &[]);
            let by_env = parse(sample.with, &[(opt.env, sample.good)]);
            assert_eq!(by_flag, by_env, "{}", opt.flag);
            let base = parse(sample.with, &[]);
            assert_ne!(
                by_flag, base,
                "{} {} changes nothing",
                opt.flag, sample.good
            );
            if let Some(value) = opt.value_name() {
                // Also `--flag VALUE`, as two arguments.
                let mut split: Vec<&str> = sample.with.to_vec();
                split.extend([opt.flag, sample.good]);
                assert_eq!(parse(&split, &[]), by_flag, "{} {value}", opt.flag);
            }
        }
    }

    #[test]
    fn every_option_refuses_a_bad_value_from_its_flag_and_its_variable() {
        for opt in options() {
            let sample = sample(opt);
            let Some(bad) = sample.bad else { continue };
            let by_flag = parse_owned(&flag_args(opt, &sample, bad), &[]).unwrap_err();
            let by_env = parse(sample.with, &[(opt.env, bad)]).unwrap_err();
            assert_eq!(by_flag, by_env, "{}", opt.flag);
            // The message names the option (the listen address names itself).
            let named = if opt.flag == "--listen" {
                "listen address"
            } else {
                opt.flag
            };
            assert!(by_flag.to_string().contains(named), "{by_flag}");
            // A flag hides a bad variable.
            let flag_wins = parse_owned(&flag_args(opt, &sample, sample.good), &[(opt.env, bad)]);
            assert!(flag_wins.is_ok(), "{}: {flag_wins:?}", opt.flag);
        }
    }

    /// The default `--help` shows is the one the config uses: typed back in, it changes nothing.
    #[test]
    fn every_default_shown_is_the_default_used() {
        let help = help();
        for opt in options() {
            let Some(default) = opt.default_text() else {
                continue;
            };
            assert!(
                help.contains(&format!("[default: {default}]")),
                "{}",
                opt.flag
            );
            let mut config = Config::default();
            opt.apply(&mut config, &default).unwrap();
            assert_eq!(config, Config::default(), "{} {default}", opt.flag);
        }
        assert!(help.contains(&format!("every {}", duration_text(HEARTBEAT_INTERVAL))));
        assert!(help.contains(&format!("[default: {DEFAULT_LOG_FILTER}]")));
    }

    #[test]
    fn help_lists_every_option_once_and_no_two_share_a_flag_or_variable() {
        let help = help();
        let mut flags = std::collections::HashSet::new();
        let mut envs = std::collections::HashSet::new();
        for opt in options() {
            assert!(flags.insert(opt.flag), "{} twice", opt.flag);
            assert!(envs.insert(opt.env), "{} twice", opt.env);
            let usage = match opt.value_name() {
                Some(value) => format!("  {} {value}", opt.flag),
                None => format!("  {} ", opt.flag),
            };
            assert_eq!(help.matches(&usage).count(), 1, "{usage:?} in --help");
            // help2man (the man page) needs two spaces, or a new line, between the usage and its text.
            let usage = usage.trim_end();
            assert!(
                help.contains(&format!("{usage}  ")) || help.contains(&format!("{usage}\n")),
                "{usage:?} runs into its text"
            );
            assert!(help.contains(&format!("[env {}", opt.env)), "{}", opt.env);
        }
        assert!(help.lines().all(|line| line.chars().count() <= HELP_WIDTH));
    }

    #[test]
    fn derived_settings_follow_the_options() {
        let ingest = run(
            &[
                "--start-back=5",
                "--poll-interval=3s",
                "--max-log-growth=7",
                "--get-entries-bytes-per-entry=1KiB",
                "--resolve=ct.example:443:127.0.0.1",
            ],
            &[],
        )
        .ingest;
        let poll = ingest.poll_options();
        assert_eq!(
            (
                poll.start_back,
                poll.poll_interval,
                poll.max_growth_per_second,
                poll.get_entries_bytes_per_entry
            ),
            (5, Duration::from_secs(3), 7, 1024)
        );
        assert_eq!(poll.request_timeout, HttpClientConfig::default().timeout);
        let http = ingest.http_client_config();
        assert_eq!(
            http.resolve_overrides[&("ct.example".to_owned(), 443)],
            ["127.0.0.1:443".parse().unwrap()]
        );
    }
}
