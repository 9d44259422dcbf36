//! Plain HTTP sent to the TLS port (an `http://` link, a health check without TLS): the first
//! byte of a TLS connection is a handshake record (0x16); an HTTP request starts with a method
//! in capitals. Such a client gets a short 400 saying the port speaks HTTPS, then the
//! connection closes — the idea of nginx's 497 — instead of a TLS alert it cannot read.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a connection's first byte says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum First {
    /// A TLS handshake record.
    Tls,
    /// An ASCII capital: an HTTP method.
    Http,
    /// Anything else: left to the TLS handshake to refuse.
    Other,
    /// Closed (or failed) before a byte came.
    Closed,
}

pub(crate) fn classify(b: u8) -> First {
    match b {
        0x16 => First::Tls,
        b'A'..=b'Z' => First::Http,
        _ => First::Other,
    }
}

/// Wait for the first byte without consuming it (the caller bounds the wait).
pub(crate) async fn first_byte(s: &TcpStream) -> First {
    let mut b = [0u8; 1];
    match s.peek(&mut b).await {
        Ok(1) => classify(b[0]),
        _ => First::Closed,
    }
}

const BODY: &str = "400 Bad Request: this port speaks HTTPS; use https:// in the address.\n\
400 错误请求：此端口仅支持 HTTPS，请使用 https:// 地址访问。\n";

/// The whole answer: status line, headers, body.
pub(crate) fn response() -> String {
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{BODY}",
        BODY.len()
    )
}

/// Most of the request head read before answering (closing on unread bytes would reset the
/// connection and the client might never see the answer), and how long that may take.
const MAX_HEAD: usize = 16 * 1024;
const READ_FOR: Duration = Duration::from_secs(2);

/// Read the request head (bounded in bytes and time), answer the 400, close.
pub(crate) async fn answer<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let _ = tokio::time::timeout(READ_FOR, async {
        while head.len() < MAX_HEAD {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(READ_FOR, async {
        io.write_all(response().as_bytes()).await?;
        io.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes() {
        assert_eq!(classify(0x16), First::Tls);
        assert_eq!(classify(b'G'), First::Http);
        assert_eq!(classify(b'P'), First::Http);
        assert_eq!(
            classify(0x80),
            First::Other,
            "SSLv2-style hello: left to rustls"
        );
        assert_eq!(classify(b'g'), First::Other);
    }

    #[test]
    fn response_is_well_formed() {
        let r = response();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.contains("HTTPS") && body.contains("此端口仅支持 HTTPS"));
    }

    proptest::proptest! {
        /// Whatever a plain-HTTP client sends (any bytes, any length, with or without the end
        /// of a head), the answer is the same 400 and the function returns.
        #[test]
        fn any_input_gets_the_same_answer(input in proptest::collection::vec(proptest::num::u8::ANY, 0..40_000)) {
            let out = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap()
                .block_on(async {
                    let (mut client, mut server) = tokio::io::duplex(64 * 1024);
                    client.write_all(&input).await.unwrap();
                    client.shutdown().await.unwrap();
                    answer(&mut server).await;
                    drop(server);
                    let mut out = String::new();
                    client.read_to_string(&mut out).await.unwrap();
                    out
                });
            proptest::prop_assert_eq!(out, response());
        }
    }

    #[tokio::test]
    async fn answers_after_reading_the_head() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        answer(&mut server).await;
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, response());
    }
}
