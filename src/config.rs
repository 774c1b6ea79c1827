//! Server configuration: command-line flags and environment variables → [`Config`].
//!
//! Flags win over environment variables, which win over the defaults. Parsing is pure (arguments and a variable
//! lookup are passed in), so it is tested without touching the process environment.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Everything the server needs to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Frames queued per client before the oldest is dropped (FORMAT.md §3: 256).
    pub ring_size: usize,
    /// Open connections (WebSocket or HTTP) accepted at once; beyond it upgrades get `503`.
    pub max_connections: usize,
    /// Open connections accepted at once from one IP address; beyond it upgrades get `503`.
    pub max_connections_per_ip: usize,
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
    /// Start this many entries before each log's current size (0: only new certificates).
    pub start_back: u64,
    /// How often a caught-up log is polled.
    pub poll_interval: Duration,
    /// Fixed addresses for `(host, port)` of CT logs and lists, bypassing DNS (like curl's `--resolve`).
    pub resolve: Vec<(String, u16, SocketAddr)>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            log_list: None,
            log_list_signature: None,
            apple_log_list: false,
            include_pending: false,
            log_list_refresh: Duration::from_secs(3600),
            start_back: 0,
            poll_interval: Duration::from_secs(2),
            resolve: Vec::new(),
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
            heartbeat: None,
            slow_client_grace: crate::hub::admission::DEFAULT_SLOW_CLIENT_GRACE,
            ping_interval: Duration::from_secs(30),
            write_stall_timeout: Duration::from_secs(60),
            request_head_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(1),
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

Options:
  --listen ADDR             address to serve on, Go style: :8080 (all interfaces), 127.0.0.1:8080, [::1]:8080
                            [env WEBSOCKET_LISTEN] [default :8080]
  --ring-size N             messages queued per client before the oldest is dropped [env CERTSTREAM_RING_SIZE] [256]
  --max-connections N       open connections at once [env CERTSTREAM_MAX_CONNECTIONS] [50000]
  --max-connections-per-ip N
                            open connections at once from one address [env CERTSTREAM_MAX_CONNECTIONS_PER_IP] [1000]
  --heartbeat               send a heartbeat message every 30 s on every stream [env CERTSTREAM_HEARTBEAT=1]
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
  --start-back N            start N entries before each log's current size [env CERTSTREAM_START_BACK] [0: only
                            new certificates]
  --poll-interval DURATION  how often a caught-up log is polled [env CERTSTREAM_POLL_INTERVAL] [2s]
  --resolve HOST:PORT:ADDR[,HOST:PORT:ADDR…]
                            connect to ADDR (an IP, or IP:PORT) for HOST:PORT instead of asking DNS
                            [env CERTSTREAM_RESOLVE]

Other:
  RUST_LOG                  log filter (tracing EnvFilter syntax) [info]
  --help                    this text
  --version                 the version
";

/// One option: its flag, its environment variable, whether it takes a value.
struct Opt {
    flag: &'static str,
    env: &'static str,
    takes_value: bool,
}

const OPTS: [Opt; 14] = [
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
        flag: "--heartbeat",
        env: "CERTSTREAM_HEARTBEAT",
        takes_value: false,
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
        flag: "--resolve",
        env: "CERTSTREAM_RESOLVE",
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
            heartbeat,
            slow_client_grace,
            log_list,
            signature,
            apple,
            pending,
            refresh,
            start_back,
            poll_interval,
            resolve,
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
        if let Some(v) = heartbeat {
            config.heartbeat = parse_switch("--heartbeat", &v)?.then_some(Duration::from_secs(30));
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
        if let Some(v) = start_back {
            ingest.start_back = v
                .parse()
                .map_err(|_| ConfigError(format!("--start-back: `{v}` is not a whole number")))?;
        }
        if let Some(v) = poll_interval {
            ingest.poll_interval = parse_duration("--poll-interval", &v)?;
        }
        if let Some(v) = resolve {
            ingest.resolve = v
                .split(',')
                .filter(|item| !item.is_empty())
                .map(parse_resolve)
                .collect::<Result<_, _>>()?;
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

/// Parses a duration: a positive number with a unit `ms`, `s`, `m` or `h` (seconds when none).
pub fn parse_duration(flag: &str, text: &str) -> Result<Duration, ConfigError> {
    let bad = || {
        ConfigError(format!(
            "{flag}: `{text}` is not a duration like 500ms, 30s, 10m or 1h"
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
        Ok(duration) if !duration.is_zero() => Ok(duration),
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
        let flag_wins = run(&["--log-list", "list.json"], &[("CUSTOM_LOG_LIST", "x")]);
        assert_eq!(flag_wins.ingest.log_list.as_deref(), Some("list.json"));
        assert_eq!(run(&[], &[("CUSTOM_LOG_LIST", "")]).ingest.log_list, None);
        assert!(parse(&["--log-list-signature", "x.sig"], &[]).is_err());
        assert!(parse(&["--start-back", "-1"], &[]).is_err());
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
