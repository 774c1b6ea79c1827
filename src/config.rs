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
    /// Interval of the server's WebSocket pings.
    pub ping_interval: Duration,
    /// A connection whose writes make no progress for this long is closed.
    pub write_stall_timeout: Duration,
    /// Time a client has to send a complete HTTP request head.
    pub request_head_timeout: Duration,
    /// Upper bound of the graceful shutdown (close frames flushed, close replies awaited).
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 8080),
            ring_size: 256,
            max_connections: 50_000,
            max_connections_per_ip: 1_000,
            heartbeat: None,
            ping_interval: Duration::from_secs(30),
            write_stall_timeout: Duration::from_secs(60),
            request_head_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(1),
        }
    }
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Serve with this configuration.
    Run(Config),
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
  --help                    this text
  --version                 the version
";

/// One option: its flag, its environment variable, whether it takes a value.
struct Opt {
    flag: &'static str,
    env: &'static str,
    takes_value: bool,
}

const OPTS: [Opt; 5] = [
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
        let [listen, ring, max, per_ip, heartbeat] = values;
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
        Ok(Self::Run(config))
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
            Ok(Command::Run(config)) => config,
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
            ],
            &[],
        );
        assert_eq!(
            (config.max_connections, config.max_connections_per_ip),
            (10, 2)
        );
        assert_eq!(config.heartbeat, Some(Duration::from_secs(30)));
        assert_eq!(run(&[], &[("CERTSTREAM_HEARTBEAT", "off")]).heartbeat, None);
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
