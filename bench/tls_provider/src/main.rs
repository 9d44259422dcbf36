//! The server side of rustls with ring (wxgate's provider) against aws-lc-rs, in one process:
//! a TLS 1.3 handshake with an ECDSA P-256 certificate and X25519 (what wrk, h2load and
//! browsers negotiate with the bench's certificate), and small records (a 100-byte request
//! read, a 150-byte answer written). The client is the same (ring) for both, and its work is
//! left out of the times. Rounds alternate the providers; read the spread between rounds.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::{aws_lc_rs, ring, CryptoProvider};
use rustls::{ClientConnection, ServerConnection};

const HANDSHAKES: u32 = 2000;
const RECORDS: u32 = 20;
const ROUNDS: u32 = 5;

fn providers() -> [(&'static str, CryptoProvider); 2] {
    // aws-lc-rs offers X25519MLKEM768 first by default; the bench's clients do not send it.
    // The same groups as ring's, so that only the implementations differ.
    let groups = vec![
        aws_lc_rs::kx_group::X25519,
        aws_lc_rs::kx_group::SECP256R1,
        aws_lc_rs::kx_group::SECP384R1,
    ];
    [
        ("ring", ring::default_provider()),
        (
            "aws-lc-rs",
            CryptoProvider {
                kx_groups: groups,
                ..aws_lc_rs::default_provider()
            },
        ),
    ]
}

/// Moves what the client has to write to the server; returns the time the server took.
fn pump_client_to_server(c: &mut ClientConnection, s: &mut ServerConnection) -> Duration {
    let mut wire = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut wire).unwrap();
    }
    let t = Instant::now();
    let mut rd = &wire[..];
    while !rd.is_empty() {
        s.read_tls(&mut rd).unwrap();
        s.process_new_packets().unwrap();
    }
    t.elapsed()
}

/// Moves what the server has to write to the client; returns the time the server took.
fn pump_server_to_client(s: &mut ServerConnection, c: &mut ClientConnection) -> Duration {
    let mut wire = Vec::new();
    let t = Instant::now();
    while s.wants_write() {
        s.write_tls(&mut wire).unwrap();
    }
    let took = t.elapsed();
    let mut rd = &wire[..];
    while !rd.is_empty() {
        c.read_tls(&mut rd).unwrap();
        c.process_new_packets().unwrap();
    }
    took
}

fn main() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = ck.key_pair.serialize_der();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    for round in 1..=ROUNDS {
        for (name, provider) in providers() {
            let server = Arc::new(
                rustls::ServerConfig::builder_with_provider(Arc::new(provider))
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_no_client_auth()
                    .with_single_cert(
                        vec![cert.clone()],
                        rustls::pki_types::PrivateKeyDer::try_from(key.clone()).unwrap(),
                    )
                    .unwrap(),
            );
            let (mut handshake, mut records) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..HANDSHAKES {
                let server_name = "localhost".try_into().unwrap();
                let mut c = ClientConnection::new(client.clone(), server_name).unwrap();
                let mut s = ServerConnection::new(server.clone()).unwrap();
                while c.is_handshaking() || s.is_handshaking() {
                    handshake += pump_client_to_server(&mut c, &mut s);
                    handshake += pump_server_to_client(&mut s, &mut c);
                }
                for _ in 0..RECORDS {
                    c.writer().write_all(&[b'q'; 100]).unwrap();
                    records += pump_client_to_server(&mut c, &mut s);
                    let t = Instant::now();
                    let mut request = [0u8; 100];
                    s.reader().read_exact(&mut request).unwrap();
                    s.writer().write_all(&[b'a'; 150]).unwrap();
                    records += t.elapsed();
                    records += pump_server_to_client(&mut s, &mut c);
                    let mut answer = [0u8; 150];
                    c.reader().read_exact(&mut answer).unwrap();
                }
            }
            println!(
                "round {round} {name:>9}: server handshake {:6.1} us, request + answer records {:5.2} us",
                handshake.as_secs_f64() * 1e6 / f64::from(HANDSHAKES),
                records.as_secs_f64() * 1e6 / f64::from(HANDSHAKES * RECORDS),
            );
        }
    }
}
