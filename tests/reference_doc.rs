//! The shipped example config and the reference doc stay true: every key of
//! `config.example.toml` is listed in `docs/reference.md`, the example as shipped is refused
//! (its secrets are placeholders, printed in this repository), and the example with its
//! placeholders replaced and its certificate files present passes `wxgate check`.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn example() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("config.example.toml")).unwrap()
}

/// Every key of a TOML table as a dotted path (`session.cookie_secret`,
/// `wechat.website.appid`); inline tables whose keys are data (`verification.files`) count as
/// one key.
fn dotted_keys(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
    for (k, v) in t {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) if path != "verification.files" => {
                dotted_keys(&path, inner, out)
            }
            _ => out.push(path),
        }
    }
}

#[test]
fn every_example_key_is_in_the_reference() {
    let table: toml::Table = example().parse().unwrap();
    let mut keys = Vec::new();
    dotted_keys("", &table, &mut keys);
    assert!(keys.len() > 40, "{keys:?}");
    let reference = std::fs::read_to_string(Path::new(ROOT).join("docs/reference.md")).unwrap();
    let missing: Vec<_> = keys
        .iter()
        .filter(|k| !reference.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "keys of config.example.toml missing from docs/reference.md: {missing:?}"
    );
    // Commented-out `_file` variants are documented as a rule, not key by key.
    assert!(reference.contains("<key>_file"));
}

fn check(dir: &Path, config: &str) -> std::process::Output {
    std::fs::write(dir.join("wxgate.toml"), config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_wxgate"))
        .args(["check", "--config", "wxgate.toml"])
        .current_dir(dir)
        .env_remove("WXGATE_CONFIG")
        .output()
        .unwrap()
}

fn write_certs(dir: &Path) {
    let c = rcgen::generate_simple_self_signed(vec!["app.example.com".to_string()]).unwrap();
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::write(dir.join("certs/server.crt"), c.cert.pem()).unwrap();
    std::fs::write(dir.join("certs/server.key"), c.key_pair.serialize_pem()).unwrap();
}

/// The example with every `replace-…` secret filled in, except those `keep` names.
fn filled(keep: &[&str]) -> String {
    let mut cfg = String::new();
    for (i, line) in example().lines().enumerate() {
        let key = line.split('=').next().unwrap_or("").trim();
        if line.contains("\"replace-") && !keep.contains(&key) {
            cfg.push_str(&format!(
                "{key} = \"a-real-secret-of-forty-bytes-or-so-{i:05}\"\n"
            ));
        } else {
            cfg.push_str(line);
            cfg.push('\n');
        }
    }
    cfg
}

#[test]
fn the_example_as_shipped_is_refused_with_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    // As shipped: the first placeholder secret is named, with where the real one comes from.
    let out = check(dir.path(), &example());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wechat.website.secret")
            && err.contains("placeholder")
            && err.contains("AppSecret"),
        "{err}"
    );
    // Secrets filled in, no certificate files yet: the message says where they come from.
    let out = check(dir.path(), &filled(&[]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.tls_cert")
            && err.contains("wxgate dev")
            && err.contains("fullchain.pem"),
        "{err}"
    );
    // Certificates present, only the cookie secret left as shipped: refused with a way to
    // generate one.
    write_certs(dir.path());
    let out = check(dir.path(), &filled(&["cookie_secret"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("session.cookie_secret") && err.contains("openssl rand"),
        "{err}"
    );
}

#[test]
fn the_example_with_its_placeholders_replaced_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    write_certs(dir.path());
    let cfg = filled(&[]);
    assert!(!cfg.contains("replace-"));
    let out = check(dir.path(), &cfg);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    // check prints the effective config with the secrets redacted.
    assert!(!printed.contains("a-real-secret"), "{printed}");
}
