//! `http-get`: a plain HTTP/1.1 GET over a TCP stream, to IPv4 or IPv6 literals.

use std::io::{self, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::str::FromStr;
use std::time::{Duration, Instant};

use clap::Args;
use nodeward_testkit::ProbeResult;

#[derive(Args)]
pub struct HttpGetArgs {
    /// `http://HOST[:PORT]/PATH`; an IPv6 host in brackets, e.g. `http://[fd00:ec2::254]/`.
    url: HttpUrl,
    /// Give up on the whole exchange after this many milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
}

impl HttpGetArgs {
    pub fn run(self) -> io::Result<ProbeResult> {
        let deadline = Instant::now() + Duration::from_millis(self.timeout_ms);
        let url = &self.url;
        let addr = (url.host.as_str(), url.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} has no address", url.host),
                )
            })?;
        let mut stream = TcpStream::connect_timeout(&addr, remaining(deadline)?)?;
        stream.set_write_timeout(Some(remaining(deadline)?))?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: nodeward-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            url.path, url.authority
        );
        stream.write_all(request.as_bytes())?;
        let mut raw = Vec::new();
        let mut chunk = [0u8; 8192];
        while !complete(&raw) {
            stream.set_read_timeout(Some(remaining(deadline)?))?;
            match stream.read(&mut chunk)? {
                0 => break,
                n => raw.extend_from_slice(&chunk[..n]),
            }
        }
        let (status, body) = parse_response(&raw)?;
        Ok(ProbeResult {
            status: Some(status),
            body: Some(body),
            ..ProbeResult::success()
        })
    }
}

/// Time left before `deadline`, or a timeout error once it has passed.
fn remaining(deadline: Instant) -> io::Result<Duration> {
    Some(deadline.saturating_duration_since(Instant::now()))
        .filter(|left| !left.is_zero())
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ETIMEDOUT))
}

/// An `http://` URL, split for a raw HTTP/1.1 request.
#[derive(Clone, Debug)]
struct HttpUrl {
    /// `host[:port]` as written, for the Host header.
    authority: String,
    /// The host without IPv6 brackets, to resolve.
    host: String,
    port: u16,
    /// Path and query, at least `/`.
    path: String,
}

impl FromStr for HttpUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("only http:// URLs are supported")?;
        let rest = rest.split('#').next().unwrap_or_default();
        let (authority, path) = rest
            .find(['/', '?'])
            .map_or((rest, "/"), |i| rest.split_at(i));
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed
                    .split_once(']')
                    .ok_or("missing ] after IPv6 host")?;
                (host, after.strip_prefix(':'))
            }
            None => authority
                .split_once(':')
                .map_or((authority, None), |(h, p)| (h, Some(p))),
        };
        let port = port.map_or(Ok(80), |p| p.parse().map_err(|_| format!("bad port {p:?}")))?;
        if host.is_empty() {
            return Err("URL has no host".to_owned());
        }
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        Ok(Self {
            authority: authority.to_owned(),
            host: host.to_owned(),
            port,
            path,
        })
    }
}

/// Whether `raw` holds a whole response whose length is known from Content-Length;
/// otherwise the response ends when the server closes the connection.
fn complete(raw: &[u8]) -> bool {
    split_head(raw)
        .is_some_and(|(head, body)| content_length(&head).is_some_and(|len| body.len() >= len))
}

fn split_head(raw: &[u8]) -> Option<(String, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((
        String::from_utf8_lossy(&raw[..end]).into_owned(),
        &raw[end + 4..],
    ))
}

fn content_length(head: &str) -> Option<usize> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
}

/// The status code and body of a response (chunked bodies are not decoded).
fn parse_response(raw: &[u8]) -> io::Result<(u16, String)> {
    let invalid = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} in HTTP response"),
        )
    };
    let (head, body) = split_head(raw).ok_or_else(|| invalid("no end of headers"))?;
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let body = content_length(&head).map_or(body, |len| &body[..len.min(body.len())]);
    Ok((status, String::from_utf8_lossy(body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        let url: HttpUrl = "http://[fd00:ec2::254]/latest/meta-data/".parse().unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("fd00:ec2::254", 80, "/latest/meta-data/")
        );
        assert_eq!(url.authority, "[fd00:ec2::254]");
        let url: HttpUrl = "http://169.254.170.23:8080?x=1".parse().unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("169.254.170.23", 8080, "/?x=1")
        );
        assert!("https://x/".parse::<HttpUrl>().is_err());
        assert!("http://:80/".parse::<HttpUrl>().is_err());
        assert!("http://[::1/".parse::<HttpUrl>().is_err());
    }

    #[test]
    fn parses_responses() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef";
        assert!(complete(raw));
        assert_eq!(parse_response(raw).unwrap(), (200, "abc".to_owned()));
        let raw = b"HTTP/1.0 404 Not Found\r\n\r\nnope";
        assert!(!complete(raw));
        assert_eq!(parse_response(raw).unwrap(), (404, "nope".to_owned()));
        assert!(parse_response(b"garbage").is_err());
    }
}
