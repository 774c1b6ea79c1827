//! Server configuration: command-line flags and environment variables → [`Config`].
//!
//! Flags win over environment variables, which win over the defaults. Parsing is pure (arguments and a variable
//! lookup are passed in), so it is tested without touching the process environment.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::ingest::growth::DEFAULT_MAX_GROWTH_PER_SECOND;
use crate::ingest::issuers::DEFAULT_BUDGET_BYTES as DEFAULT_ISSUER_CACHE_BYTES;
use crate::stream::BuildLimits;

/// Everything the server needs to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
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
    /// Which CT logs to follow, and how.
    pub ingest: IngestConfig,
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
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 8080),
            ring_size: 256,
            max_connections: 50_000,
            max_connections_per_ip: 1_000,
            client_queue_bytes: 8 << 20,
            descriptor_reserve: 256,
            max_latest_bytes: 1 << 20,
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
            ingest: IngestConfig::default(),
        }
    }
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Serve with this configuration (boxed: it dwarfs the other variants).
    Run(Box<Config>),
    /// Print the usage text.
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

/// The usage text printed by `--help`.
pub const HELP: &str = "certstream: streams every new Certificate Transparency log entry as JSON over WebSocket

Usage: certstream [OPTIONS]

SIZE is a number of bytes above 0, optionally with a KiB or MiB suffix (64KiB, 8MiB).
DURATION is a number with ms, s, m or h (500ms, 30s, 1.5m, 1h), above 0 and at most a year.

Options:
  --listen ADDR             address to serve on, Go style: :8080 (all interfaces), 127.0.0.1:8080, [::1]:8080
                            [env WEBSOCKET_LISTEN] [default :8080]
  --ring-size N             messages queued per client before the oldest is dropped [env CERTSTREAM_RING_SIZE] [256]
  --max-connections N       open connections at once [env CERTSTREAM_MAX_CONNECTIONS] [50000]
  --max-connections-per-ip N
                            open connections at once from one address [env CERTSTREAM_MAX_CONNECTIONS_PER_IP] [1000]
  --client-queue-bytes SIZE bytes queued per client before the oldest messages are dropped
                            [env CERTSTREAM_CLIENT_QUEUE_BYTES] [8MiB]
  --fd-reserve N            file descriptors kept free for CT log connections: clients are refused before the
                            open-files limit minus N [env CERTSTREAM_FD_RESERVE] [256]
  --max-latest-bytes SIZE   larger messages are left out of /latest.json and the example routes
                            [env CERTSTREAM_MAX_LATEST_BYTES] [1MiB]
  --ops-rate N              requests per second on each of /stats, /metrics, /latest.json and the example
                            routes (burst: 2 s worth); more get 429 [env CERTSTREAM_OPS_RATE] [20]
  --heartbeat               send a heartbeat message every 30 s on every stream [env CERTSTREAM_HEARTBEAT=1]
  --http-write-timeout DURATION
                            time to write a whole HTTP response, then the connection is closed
                            [env CERTSTREAM_HTTP_WRITE_TIMEOUT] [10s]
  --message-timeout DURATION
                            time a WebSocket client has to finish a message it started, then close 1008
                            [env CERTSTREAM_MESSAGE_TIMEOUT] [10s]
  --partial-message-budget SIZE
                            bytes all unfinished client messages may hold together; a client growing past it is
                            closed with 1008 [env CERTSTREAM_PARTIAL_MESSAGE_BUDGET] [64MiB]
  --control-frames-per-second N
                            pings and pongs accepted per client per second (also the burst); beyond, close 1008
                            [env CERTSTREAM_CONTROL_FRAMES_PER_SECOND] [20]
  --tcp-keepalive DURATION  idle time before TCP keepalive probes a silent client (every 10 s, 6 probes: a vanished
                            peer is closed after about 2 min; silent but present clients are never closed); 0 turns
                            it off [env CERTSTREAM_TCP_KEEPALIVE] [60s]
  --slow-client-grace DURATION
                            ingestion slows down rather than drop messages for clients that keep up; a client
                            whose socket stays full this long does not keep up: it is no longer waited for and
                            loses its oldest queued messages [env CERTSTREAM_SLOW_CLIENT_GRACE] [500ms]

Certificate Transparency logs:
  --log-list URL|PATH       follow the logs of this v3 log list (http(s) URL or file) instead of Chrome's signed
                            list [env CUSTOM_LOG_LIST]. Without a list at start-up, a compiled-in copy of Chrome's
                            list is used; a list that later fails to load or parse leaves the previous one in place
  --log-list-signature URL|PATH
                            check the custom list against this detached signature with Google's list-signing key
                            (for mirrors of Chrome's list); without it a custom list is not signature-checked
                            [env CERTSTREAM_LOG_LIST_SIGNATURE]
  --apple-log-list          also follow the logs of Apple's list [env CERTSTREAM_APPLE_LOG_LIST=1]
  --include-pending         also follow pending logs [env CERTSTREAM_INCLUDE_PENDING=1]
  --log-list-refresh DURATION
                            how often the list is fetched again: 1h, 10m, 30s, 500ms
                            [env CERTSTREAM_LOG_LIST_REFRESH] [1h]
  --log-list-max-size SIZE  largest list or signature accepted (file or URL); a bigger one is a failed load
                            [env CERTSTREAM_LOG_LIST_MAX_SIZE] [4MiB]
  --log-list-timeout DURATION
                            deadline for reading the list and its signature (a FIFO or a hung mount cannot
                            hold the server) [env CERTSTREAM_LOG_LIST_TIMEOUT] [10s]
  --start-back N            start N entries before each log's current size [env CERTSTREAM_START_BACK] [0: only
                            new certificates]
  --poll-interval DURATION  how often a caught-up log is polled [env CERTSTREAM_POLL_INTERVAL] [2s]
  --max-log-growth N        entries per second a log may grow; a tree head beyond that (10 s of it saved up) is
                            logged and followed at this rate [env CERTSTREAM_MAX_LOG_GROWTH] [2000]
  --chain-cache-bytes SIZE  budget of the cache of chain certificates' JSON [env CERTSTREAM_CHAIN_CACHE_BYTES] [8MiB]
  --issuer-cache-bytes SIZE budget of the tiled logs' issuer cache [env CERTSTREAM_ISSUER_CACHE_BYTES] [4MiB]
  --max-certificate-bytes SIZE
                            larger certificates are skipped unparsed [env CERTSTREAM_MAX_CERTIFICATE_BYTES] [256KiB]
  --max-chain-certificate-bytes SIZE
                            larger chain certificates and issuers are left out
                            [env CERTSTREAM_MAX_CHAIN_CERTIFICATE_BYTES] [64KiB]
  --max-message-bytes SIZE  entries whose message is larger are skipped [env CERTSTREAM_MAX_MESSAGE_BYTES] [1MiB]
                            (every skip is counted in /stats)
  --resolve HOST:PORT:ADDR[,HOST:PORT:ADDR…]
                            connect to ADDR (an IP, or IP:PORT) for HOST:PORT instead of asking DNS
                            [env CERTSTREAM_RESOLVE]
  --get-entries-bytes-per-entry SIZE
                            refuse a get-entries body larger than SIZE per entry asked for (the whole body may
                            hold at least 4 MiB, at most 64 MiB; refusals counted in /stats
                            `http.bodies_too_large`) [env CERTSTREAM_GET_ENTRIES_BYTES_PER_ENTRY] [64KiB]

Other:
  RUST_LOG                  log filter (tracing EnvFilter syntax) [info]
  --log-buffer SIZE         log lines waiting for a slow stdout; beyond it lines are dropped and counted
                            [env CERTSTREAM_LOG_BUFFER] [1MiB]
  --help                    this text
  --version                 the version
";

/// One option: its flag, its environment variable, whether it takes a value.
struct Opt {
    flag: &'static str,
    env: &'static str,
    takes_value: bool,
}

const OPTS: [Opt; 33] = [
    Opt {
        flag: "--listen",
        env: "WEBSOCKET_LISTEN",
        takes_value: true,
    },
    Opt {
        flag: "--ring-size",
        env: "CERTSTREAM_RING_SIZE",
        takes_value: true,
    },
    Opt {
        flag: "--max-connections",
        env: "CERTSTREAM_MAX_CONNECTIONS",
        takes_value: true,
    },
    Opt {
        flag: "--max-connections-per-ip",
        env: "CERTSTREAM_MAX_CONNECTIONS_PER_IP",
        takes_value: true,
    },
    Opt {
        flag: "--client-queue-bytes",
        env: "CERTSTREAM_CLIENT_QUEUE_BYTES",
        takes_value: true,
    },
    Opt {
        flag: "--fd-reserve",
        env: "CERTSTREAM_FD_RESERVE",
        takes_value: true,
    },
    Opt {
        flag: "--max-latest-bytes",
        env: "CERTSTREAM_MAX_LATEST_BYTES",
        takes_value: true,
    },
    Opt {
        flag: "--ops-rate",
        env: "CERTSTREAM_OPS_RATE",
        takes_value: true,
    },
    Opt {
        flag: "--heartbeat",
        env: "CERTSTREAM_HEARTBEAT",
        takes_value: false,
    },
    Opt {
        flag: "--http-write-timeout",
        env: "CERTSTREAM_HTTP_WRITE_TIMEOUT",
        takes_value: true,
    },
    Opt {
        flag: "--message-timeout",
        env: "CERTSTREAM_MESSAGE_TIMEOUT",
        takes_value: true,
    },
    Opt {
        flag: "--partial-message-budget",
        env: "CERTSTREAM_PARTIAL_MESSAGE_BUDGET",
        takes_value: true,
    },
    Opt {
        flag: "--control-frames-per-second",
        env: "CERTSTREAM_CONTROL_FRAMES_PER_SECOND",
        takes_value: true,
    },
    Opt {
        flag: "--tcp-keepalive",
        env: "CERTSTREAM_TCP_KEEPALIVE",
        takes_value: true,
    },
    Opt {
        flag: "--slow-client-grace",
        env: "CERTSTREAM_SLOW_CLIENT_GRACE",
        takes_value: true,
    },
    Opt {
        flag: "--log-list",
        env: "CUSTOM_LOG_LIST",
        takes_value: true,
    },
    Opt {
        flag: "--log-list-signature",
        env: "CERTSTREAM_LOG_LIST_SIGNATURE",
        takes_value: true,
    },
    Opt {
        flag: "--apple-log-list",
        env: "CERTSTREAM_APPLE_LOG_LIST",
        takes_value: false,
    },
    Opt {
        flag: "--include-pending",
        env: "CERTSTREAM_INCLUDE_PENDING",
        takes_value: false,
    },
    Opt {
        flag: "--log-list-refresh",
        env: "CERTSTREAM_LOG_LIST_REFRESH",
        takes_value: true,
    },
    Opt {
        flag: "--log-list-max-size",
        env: "CERTSTREAM_LOG_LIST_MAX_SIZE",
        takes_value: true,
    },
    Opt {
        flag: "--log-list-timeout",
        env: "CERTSTREAM_LOG_LIST_TIMEOUT",
        takes_value: true,
    },
    Opt {
        flag: "--log-buffer",
        env: "CERTSTREAM_LOG_BUFFER",
        takes_value: true,
    },
    Opt {
        flag: "--start-back",
        env: "CERTSTREAM_START_BACK",
        takes_value: true,
    },
    Opt {
        flag: "--poll-interval",
        env: "CERTSTREAM_POLL_INTERVAL",
        takes_value: true,
    },
    Opt {
        flag: "--max-log-growth",
        env: "CERTSTREAM_MAX_LOG_GROWTH",
        takes_value: true,
    },
    Opt {
        flag: "--chain-cache-bytes",
        env: "CERTSTREAM_CHAIN_CACHE_BYTES",
        takes_value: true,
    },
    Opt {
        flag: "--issuer-cache-bytes",
        env: "CERTSTREAM_ISSUER_CACHE_BYTES",
        takes_value: true,
    },
    Opt {
        flag: "--max-certificate-bytes",
        env: "CERTSTREAM_MAX_CERTIFICATE_BYTES",
        takes_value: true,
    },
    Opt {
        flag: "--max-chain-certificate-bytes",
        env: "CERTSTREAM_MAX_CHAIN_CERTIFICATE_BYTES",
        takes_value: true,
    },
    Opt {
        flag: "--max-message-bytes",
        env: "CERTSTREAM_MAX_MESSAGE_BYTES",
        takes_value: true,
    },
    Opt {
        flag: "--resolve",
        env: "CERTSTREAM_RESOLVE",
        takes_value: true,
    },
    Opt {
        flag: "--get-entries-bytes-per-entry",
        env: "CERTSTREAM_GET_ENTRIES_BYTES_PER_ENTRY",
        takes_value: true,
    },
];

impl Command {
    /// Parses the arguments (without the program name); `env` looks up an environment variable.
    pub fn parse<I, S>(args: I, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        // Values by option index: environment first, then flags override.
        let mut values: [Option<String>; OPTS.len()] = std::array::from_fn(|i| env(OPTS[i].env));
        let mut args = args.into_iter().map(Into::into);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--help" | "-h" => return Ok(Self::Help),
                "--version" | "-V" => return Ok(Self::Version),
                _ => {}
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let Some(index) = OPTS.iter().position(|opt| opt.flag == name) else {
                return Err(ConfigError(format!(
                    "unknown argument `{arg}` (see --help)"
                )));
            };
            values[index] = Some(if OPTS[index].takes_value {
                match inline.or_else(|| args.next()) {
                    Some(value) => value,
                    None => return Err(ConfigError(format!("{name} needs a value"))),
                }
            } else {
                inline.unwrap_or_else(|| "1".to_owned())
            });
        }
        let mut config = Config::default();
        let [
            listen,
            ring,
            max,
            per_ip,
            queue_bytes,
            fd_reserve,
            latest_bytes,
            ops_rate,
            heartbeat,
            http_write_timeout,
            message_timeout,
            partial_message_budget,
            control_frames_per_second,
            tcp_keepalive,
            slow_client_grace,
            log_list,
            signature,
            apple,
            pending,
            refresh,
            list_max_size,
            list_timeout,
            log_buffer,
            start_back,
            poll_interval,
            max_log_growth,
            chain_cache_bytes,
            issuer_cache_bytes,
            max_certificate_bytes,
            max_chain_certificate_bytes,
            max_message_bytes,
            resolve,
            get_entries_bytes_per_entry,
        ] = values;
        if let Some(v) = listen {
            config.listen = parse_listen(&v)?;
        }
        if let Some(v) = ring {
            config.ring_size = parse_count("--ring-size", &v)?;
        }
        if let Some(v) = max {
            config.max_connections = parse_count("--max-connections", &v)?;
        }
        if let Some(v) = per_ip {
            config.max_connections_per_ip = parse_count("--max-connections-per-ip", &v)?;
        }
        if let Some(v) = queue_bytes {
            config.client_queue_bytes = parse_bytes("--client-queue-bytes", &v)?;
        }
        if let Some(v) = fd_reserve {
            config.descriptor_reserve = parse_count("--fd-reserve", &v)?;
        }
        if let Some(v) = latest_bytes {
            config.max_latest_bytes = parse_bytes("--max-latest-bytes", &v)?;
        }
        if let Some(v) = ops_rate {
            config.ops_rate = parse_count("--ops-rate", &v)?;
        }
        if let Some(v) = heartbeat {
            config.heartbeat = parse_switch("--heartbeat", &v)?.then_some(Duration::from_secs(30));
        }
        if let Some(v) = log_buffer {
            config.log_buffer = parse_bytes("--log-buffer", &v)?;
        }
        if let Some(v) = http_write_timeout {
            config.http_write_timeout = parse_duration("--http-write-timeout", &v)?;
        }
        if let Some(v) = message_timeout {
            config.message_timeout = parse_duration("--message-timeout", &v)?;
        }
        if let Some(v) = partial_message_budget {
            config.partial_message_budget = parse_bytes("--partial-message-budget", &v)?;
        }
        if let Some(v) = control_frames_per_second {
            let n = parse_count("--control-frames-per-second", &v)?;
            config.control_frames_per_second = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(v) = tcp_keepalive {
            config.tcp_keepalive = match v.as_str() {
                "0" | "off" => None,
                _ => Some(parse_duration("--tcp-keepalive", &v)?),
            };
        }
        if let Some(v) = slow_client_grace {
            config.slow_client_grace = parse_duration("--slow-client-grace", &v)?;
        }
        let ingest = &mut config.ingest;
        ingest.log_list = log_list.filter(|v| !v.is_empty());
        ingest.log_list_signature = signature.filter(|v| !v.is_empty());
        if let Some(v) = apple {
            ingest.apple_log_list = parse_switch("--apple-log-list", &v)?;
        }
        if let Some(v) = pending {
            ingest.include_pending = parse_switch("--include-pending", &v)?;
        }
        if let Some(v) = refresh {
            ingest.log_list_refresh = parse_duration("--log-list-refresh", &v)?;
        }
        if let Some(v) = list_max_size {
            ingest.log_list_max_size = parse_bytes("--log-list-max-size", &v)?;
        }
        if let Some(v) = list_timeout {
            ingest.log_list_timeout = parse_duration("--log-list-timeout", &v)?;
        }
        if let Some(v) = start_back {
            ingest.start_back = v
                .parse()
                .map_err(|_| ConfigError(format!("--start-back: `{v}` is not a whole number")))?;
        }
        if let Some(v) = poll_interval {
            ingest.poll_interval = parse_duration("--poll-interval", &v)?;
        }
        if let Some(v) = max_log_growth {
            ingest.max_log_growth = parse_count("--max-log-growth", &v)? as u64;
        }
        let limits = &mut ingest.build_limits;
        for (flag, value, field) in [
            (
                "--chain-cache-bytes",
                chain_cache_bytes,
                &mut limits.chain_cache_bytes,
            ),
            (
                "--issuer-cache-bytes",
                issuer_cache_bytes,
                &mut ingest.issuer_cache_bytes,
            ),
            (
                "--max-certificate-bytes",
                max_certificate_bytes,
                &mut limits.max_certificate_bytes,
            ),
            (
                "--max-chain-certificate-bytes",
                max_chain_certificate_bytes,
                &mut limits.max_chain_certificate_bytes,
            ),
            (
                "--max-message-bytes",
                max_message_bytes,
                &mut limits.max_message_bytes,
            ),
        ] {
            if let Some(v) = value {
                *field = parse_bytes(flag, &v)?;
            }
        }
        if let Some(v) = resolve {
            ingest.resolve = v
                .split(',')
                .filter(|item| !item.is_empty())
                .map(parse_resolve)
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = get_entries_bytes_per_entry {
            ingest.get_entries_bytes_per_entry = parse_bytes("--get-entries-bytes-per-entry", &v)?;
        }
        if ingest.log_list_signature.is_some() && ingest.log_list.is_none() {
            return Err(ConfigError(
                "--log-list-signature needs --log-list (Chrome's list is always signature-checked)"
                    .into(),
            ));
        }
        Ok(Self::Run(Box::new(config)))
    }
}

/// Parses a listen address the way Go's `net.Listen` does: `:8080` (every interface, IPv6 and IPv4),
/// `127.0.0.1:8080`, `[::1]:8080`, `[::]:8080`, `localhost:8080`.
pub fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
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

/// The longest duration any option takes. Every duration becomes a deadline (`Instant::now() + d`) or a timer,
/// and `Instant + Duration` panics on overflow (`--log-list-timeout 1000000000000s`); no timeout, interval or
/// grace is meaningful beyond a year, and a year is far from any overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a duration: a positive number with a unit `ms`, `s`, `m` or `h` (seconds when none), at most
/// [`MAX_DURATION`].
pub fn parse_duration(flag: &str, text: &str) -> Result<Duration, ConfigError> {
    let bad = || {
        ConfigError(format!(
            "{flag}: `{text}` is not a duration above 0 and at most a year, like 500ms, 30s, 10m or 1h"
        ))
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
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

/// Parses one `--resolve` item, `HOST:PORT:ADDR`, where ADDR is an IP (the port stays PORT) or an IP with its own
/// port (`127.0.0.1:9`, `[::1]:9`).
pub fn parse_resolve(text: &str) -> Result<(String, u16, SocketAddr), ConfigError> {
    let bad = || ConfigError(format!("--resolve: `{text}` is not HOST:PORT:ADDR"));
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

fn parse_count(flag: &str, text: &str) -> Result<usize, ConfigError> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError(format!(
            "{flag}: `{text}` is not a positive whole number"
        ))),
    }
}

/// A byte size, the one rule of every byte-size option: a whole number above 0 (no budget makes sense at zero: a
/// zero message cap would skip every entry, a zero cache refetch everything), optionally followed by
/// `KiB`/`K`/`k` or `MiB`/`M`/`m` (powers of 1024).
fn parse_bytes(flag: &str, text: &str) -> Result<usize, ConfigError> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
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
        .ok_or_else(|| {
            ConfigError(format!(
                "{flag}: `{text}` is not a size above 0 (bytes, or with a KiB / MiB suffix)"
            ))
        })
}

fn parse_switch(flag: &str, text: &str) -> Result<bool, ConfigError> {
    match text {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(ConfigError(format!("{flag}: `{text}` is not on/off"))),
    }
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
            assert!(parse_bytes("--x", bad).is_err(), "{bad:?}");
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
            assert!(HELP.contains(&format!("{flag} SIZE")), "{flag} in --help");
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
        let d = |t: &str| parse_duration("--x", t);
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
    }
}
