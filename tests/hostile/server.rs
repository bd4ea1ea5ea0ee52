//! Stands in for a misbehaving registry: a tiny HTTP/1.1 server on loopback
//! whose answers each test scripts (wrong digests, 401/403/500, a trickle).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send the body one byte a second.
    pub trickle: bool,
    /// Instead of `body`, an endless stream of zeros.
    pub endless: Option<Endless>,
}

/// A body that does not end: `chunk` zero bytes every `every`, until the
/// client hangs up or `stop_after` bytes are out (so a test of a client
/// that never hangs up still ends). `sent` counts what went out.
#[derive(Clone)]
pub struct Endless {
    pub chunk: usize,
    pub every: Duration,
    pub stop_after: u64,
    /// The Content-Length to announce; none means the body ends when the
    /// connection closes.
    pub announce: Option<u64>,
    pub sent: Arc<AtomicU64>,
}

impl Endless {
    pub fn fast(stop_after: u64, announce: Option<u64>) -> Endless {
        Endless {
            chunk: 64 * 1024,
            every: Duration::ZERO,
            stop_after,
            announce,
            sent: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
            trickle: false,
            endless: None,
        }
    }

    pub fn json(status: u16, body: &serde_json::Value) -> Reply {
        Reply::new(status, "application/json", body.to_string())
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
}

type Handler = dyn Fn(&str, &str) -> Reply + Send + Sync;

pub struct Hostile {
    pub port: u16,
}

impl Hostile {
    pub fn start(handler: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handler: Arc<Handler> = Arc::new(handler);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let h = handler.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, h.as_ref());
                });
            }
        });
        Hostile { port }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn serve(conn: TcpStream, handler: &Handler) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        if buf[0] == 0x16 {
            // A TLS ClientHello: this registry speaks plain HTTP only.
            out.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        }
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        let reply = handler(&method, &path);
        if let Some(e) = &reply.endless {
            return endless(out, &reply, e);
        }
        let mut head = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (k, v) in &reply.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        if method == "HEAD" {
            continue;
        }
        if reply.trickle {
            for b in &reply.body {
                out.write_all(&[*b])?;
                out.flush()?;
                std::thread::sleep(Duration::from_secs(1));
            }
        } else {
            out.write_all(&reply.body)?;
        }
    }
}

fn endless(mut out: TcpStream, reply: &Reply, e: &Endless) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
    match e.announce {
        Some(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
        None => head.push_str("Connection: close\r\n"),
    }
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    let zeros = vec![0u8; e.chunk];
    while e.sent() < e.stop_after {
        out.write_all(&zeros)?;
        out.flush()?;
        e.sent.fetch_add(zeros.len() as u64, Ordering::SeqCst);
        if !e.every.is_zero() {
            std::thread::sleep(e.every);
        }
    }
    Ok(())
}
