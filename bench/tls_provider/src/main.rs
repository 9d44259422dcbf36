//! TLS costs on the server side of rustls, in one process, the client's work left out of the
//! times (`cargo run --release -- [MODE]`; bench/README.md, "Numbers"). Rounds alternate the
//! variants; read the spread between rounds.
//!
//! - `providers` (the default): ring (wxgate's provider) against aws-lc-rs. A TLS 1.3 handshake
//!   with an ECDSA P-256 certificate and X25519 (what wrk, h2load and browsers negotiate with
//!   the bench's certificate), and small records (a 100-byte request read, a 150-byte answer
//!   written). The client is the same (ring) for both.
//! - `resumption`: ring, rustls's defaults (two TLS 1.3 tickets, stateful, in a 256-entry cache)
//!   against no tickets, one ticket and stateless tickets; each with full handshakes (a new
//!   client every time) and with resumed ones (one client, which keeps its tickets).
//! - `primitives`: what a handshake's public-key steps cost in ring: X25519 (the server makes
//!   one key pair and one agreement) and an ECDSA P-256 signature.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::{aws_lc_rs, ring, CryptoProvider};
use rustls::{ClientConnection, ServerConnection};

const HANDSHAKES: u32 = 2000;
const RECORDS: u32 = 20;
const ROUNDS: u32 = 5;
const PRIMITIVES: u32 = 5000;

/// How the server side of a variant is set up, and whether its client resumes.
struct Variant {
    name: &'static str,
    provider: CryptoProvider,
    /// TLS 1.3 tickets sent after each handshake.
    tickets: usize,
    /// Stateless tickets (ring's `Ticketer`) instead of the stateful session cache.
    stateless: bool,
    /// One client for all handshakes (it resumes with its tickets), or a new one each time.
    resume: bool,
}

impl Variant {
    fn new(name: &'static str, provider: CryptoProvider) -> Variant {
        Variant {
            name,
            provider,
            tickets: 2,
            stateless: false,
            resume: false,
        }
    }
}

fn providers() -> Vec<Variant> {
    // aws-lc-rs offers X25519MLKEM768 first by default; the bench's clients do not send it.
    // The same groups as ring's, so that only the implementations differ.
    let groups = vec![
        aws_lc_rs::kx_group::X25519,
        aws_lc_rs::kx_group::SECP256R1,
        aws_lc_rs::kx_group::SECP384R1,
    ];
    vec![
        Variant::new("ring", ring::default_provider()),
        Variant::new(
            "aws-lc-rs",
            CryptoProvider {
                kx_groups: groups,
                ..aws_lc_rs::default_provider()
            },
        ),
    ]
}

fn resumption() -> Vec<Variant> {
    let mut all = Vec::new();
    for resume in [false, true] {
        for (name, tickets, stateless) in [
            ("2 tickets (default)", 2, false),
            ("no tickets", 0, false),
            ("1 ticket", 1, false),
            ("2 stateless", 2, true),
        ] {
            all.push(Variant {
                tickets,
                stateless,
                resume,
                ..Variant::new(name, ring::default_provider())
            });
        }
    }
    all
}

/// Microseconds per call of `f`, over [`PRIMITIVES`] calls.
fn per_call(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..PRIMITIVES {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(PRIMITIVES)
}

fn primitives() {
    use ::ring::{agreement, rand::SystemRandom, signature};
    let rng = SystemRandom::new();
    let x25519 = &agreement::X25519;
    let peer = agreement::EphemeralPrivateKey::generate(x25519, &rng).unwrap();
    let peer = peer.compute_public_key().unwrap().as_ref().to_vec();
    let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let key = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    for round in 1..=ROUNDS {
        let kx = per_call(|| {
            let k = agreement::EphemeralPrivateKey::generate(x25519, &rng).unwrap();
            let _ = k.compute_public_key().unwrap();
            let peer = agreement::UnparsedPublicKey::new(x25519, &peer);
            agreement::agree_ephemeral(k, &peer, |s| s.len()).unwrap();
        });
        let sign = per_call(|| {
            key.sign(&rng, &[7u8; 48]).unwrap();
        });
        println!(
            "round {round}: X25519 key pair + agreement {kx:5.1} us, ECDSA P-256 signature {sign:5.1} us"
        );
    }
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
    let mode = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "providers".into());
    let variants = match mode.as_str() {
        "providers" => providers(),
        "resumption" => resumption(),
        "primitives" => return primitives(),
        _ => {
            eprintln!("usage: tls_provider [providers|resumption|primitives]");
            std::process::exit(2);
        }
    };
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
    // The same client, never resuming (a copy would share the original's session store).
    let mut full_client = (*client).clone();
    full_client.resumption = rustls::client::Resumption::disabled();
    let full_client = Arc::new(full_client);
    for round in 1..=ROUNDS {
        for v in &variants {
            let mut server =
                rustls::ServerConfig::builder_with_provider(Arc::new(v.provider.clone()))
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_no_client_auth()
                    .with_single_cert(
                        vec![cert.clone()],
                        rustls::pki_types::PrivateKeyDer::try_from(key.clone()).unwrap(),
                    )
                    .unwrap();
            server.send_tls13_tickets = v.tickets;
            if v.stateless {
                server.ticketer = ring::Ticketer::new().unwrap();
            }
            let server = Arc::new(server);
            let (mut handshake, mut records) = (Duration::ZERO, Duration::ZERO);
            let mut resumed = 0;
            for _ in 0..HANDSHAKES {
                let server_name = "localhost".try_into().unwrap();
                let client = if v.resume { &client } else { &full_client };
                let mut c = ClientConnection::new(client.clone(), server_name).unwrap();
                let mut s = ServerConnection::new(server.clone()).unwrap();
                while c.is_handshaking() || s.is_handshaking() {
                    handshake += pump_client_to_server(&mut c, &mut s);
                    handshake += pump_server_to_client(&mut s, &mut c);
                }
                if c.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                    resumed += 1;
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
            let how = if v.resume { "resuming" } else { "full" };
            println!(
                "round {round} {:>19}, {how:>8} ({resumed:>4} resumed): server handshake {:6.1} us, request + answer records {:5.2} us",
                v.name,
                handshake.as_secs_f64() * 1e6 / f64::from(HANDSHAKES),
                records.as_secs_f64() * 1e6 / f64::from(HANDSHAKES * RECORDS),
            );
        }
    }
}
