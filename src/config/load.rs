//! Reading the configuration: the TOML file (if any) merged with `WXGATE_SECTION__KEY`
//! environment variables by figment, `<key>_file` secrets read from their files, then
//! validated into [`Settings`].

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::error::{invalid, ConfigError};
use super::file::Config;
use super::settings::Settings;
use super::validate;

/// Where the configuration comes from.
pub fn default_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("WXGATE_CONFIG") {
        if !p.is_empty() {
            return Some(PathBuf::from(p));
        }
    }
    let local = PathBuf::from("wxgate.toml");
    local.exists().then_some(local)
}

/// Where [`default_path`] looked, for the error when it found nothing.
pub fn not_found_hint() -> String {
    let env = match std::env::var_os("WXGATE_CONFIG") {
        Some(v) if !v.is_empty() => format!("$WXGATE_CONFIG = {}", v.to_string_lossy()),
        _ => "$WXGATE_CONFIG is not set".to_string(),
    };
    let cwd = std::env::current_dir()
        .map(|d| d.join("wxgate.toml").display().to_string())
        .unwrap_or_else(|_| "./wxgate.toml".into());
    format!("no config file found: no --config given, {env}, and {cwd} does not exist; pass --config FILE")
}

impl Config {
    /// Load file (if any) + environment, resolve `<key>_file` secrets, validate.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut fig = Figment::new();
        if let Some(path) = path {
            if let Err(e) = std::fs::metadata(path) {
                return Err(ConfigError::File {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                });
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig.merge(env_provider());
        // Lossy: numbers and booleans may come as text (environment values always do).
        let cfg: Config = fig
            .extract_lossy()
            .map_err(|e| ConfigError::Parse(describe_figment(e)))?;
        cfg.into_settings()
    }

    /// Parse a TOML string (tests, `dev`), with the environment ignored.
    pub fn from_toml(s: &str) -> Result<Settings, ConfigError> {
        let cfg: Config = Figment::new()
            .merge(Toml::string(s))
            .extract()
            .map_err(|e| ConfigError::Parse(describe_figment(e)))?;
        cfg.into_settings()
    }

    /// Resolve `<key>_file` secrets, then validate into [`Settings`].
    fn into_settings(mut self) -> Result<Settings, ConfigError> {
        self.resolve_secret_files()?;
        validate::settings(self)
    }

    fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        for (name, app) in self.wechat.apps_mut() {
            if let Some(app) = app {
                resolve_file(
                    &format!("wechat.{name}.secret"),
                    &mut app.secret,
                    &app.secret_file,
                )?;
            }
        }
        resolve_file(
            "wecom.secret",
            &mut self.wecom.secret,
            &self.wecom.secret_file,
        )?;
        resolve_file(
            "session.cookie_secret",
            &mut self.session.cookie_secret,
            &self.session.cookie_secret_file,
        )?;
        resolve_file(
            "session.redis_url",
            &mut self.session.redis_url,
            &self.session.redis_url_file,
        )?;
        resolve_file(
            "headers.sign_secret",
            &mut self.headers.sign_secret,
            &self.headers.sign_secret_file,
        )?;
        resolve_file("link.secret", &mut self.link.secret, &self.link.secret_file)?;
        Ok(())
    }
}

/// `WXGATE_SECTION__KEY` variables (only those: WXGATE_CONFIG and friends are not config
/// keys), each value as text; see [`env_value`].
struct EnvProvider(Env);

fn env_provider() -> EnvProvider {
    EnvProvider(
        Env::prefixed("WXGATE_")
            .filter(|k| k.as_str().contains("__"))
            .split("__"),
    )
}

impl Provider for EnvProvider {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<figment::value::Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (k, v) in self.0.iter() {
            let nested = figment::util::nest(k.as_str(), env_value(&v))
                .into_dict()
                .expect("a non-empty key nests into a dict");
            merge_into(&mut dict, nested);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// `from`'s keys into `into`, tables merged key by key (`WXGATE_A__B` and `WXGATE_A__C` make
/// one table `a`).
fn merge_into(into: &mut Dict, from: Dict) {
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Dict(_, a)), Value::Dict(_, b)) => merge_into(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// An environment value as the configuration reads it. A list (`[...]`), a table (`{...}`) or a
/// quoted string (`"..."`) is parsed; anything else is kept as the text it is, trimmed: an
/// all-digit WeCom agent id or secret stays the string it is (figment's own parsing would make
/// `1000002` a number, and `00123` the number 123). Number and boolean keys read their text
/// when the configuration is extracted (`extract_lossy`).
fn env_value(v: &str) -> Value {
    let t = v.trim();
    if t.starts_with(['[', '{', '"']) {
        t.parse()
            .unwrap_or_else(|e: std::convert::Infallible| match e {})
    } else {
        Value::from(t.to_string())
    }
}

fn describe_figment(e: figment::Error) -> String {
    // figment reports nested key paths as `server.listen`; keep its words, one line per error.
    e.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let secret = e.path.last().is_some_and(|k| is_secret_key(k));
            let kind = match &e.kind {
                figment::error::Kind::UnknownField(field, _) => format!("unknown key `{field}`"),
                // The value of a secret is never repeated back.
                figment::error::Kind::InvalidType(_, expected) if secret => {
                    format!("invalid type: expected {expected}")
                }
                figment::error::Kind::InvalidValue(_, expected) if secret => {
                    format!("invalid value: expected {expected}")
                }
                k => without_source_lines(&k.to_string()),
            };
            let origin = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{kind}{origin}")
            } else {
                format!("{key}: {kind}{origin}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A key whose value is a secret (or holds one: a Redis URL's password).
fn is_secret_key(k: &str) -> bool {
    k.contains("secret") || k == "redis_url"
}

/// A parse error's message without the lines of the file it quotes (`3 | secret = "..."`
/// and the caret under it): the line may be a secret's. Where it is stays ("at line 3,
/// column 11").
fn without_source_lines(msg: &str) -> String {
    msg.lines()
        .filter(|l| {
            let t = l.trim_start();
            let digits = t.trim_start_matches(|c: char| c.is_ascii_digit());
            !digits.trim_start().starts_with('|')
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn resolve_file(key: &str, value: &mut String, file: &Option<PathBuf>) -> Result<(), ConfigError> {
    let Some(path) = file else { return Ok(()) };
    if !value.is_empty() {
        return Err(invalid(
            key,
            format!("set either {key} or {key}_file, not both"),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(
            format!("{key}_file"),
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    *value = text.trim().to_string();
    if value.is_empty() {
        return Err(invalid(
            format!("{key}_file"),
            format!("{} is empty", path.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_values_stay_text_unless_a_list_table_or_quoted() {
        for text in [
            "1000002", "0042", "1.50", "true", "-3", " spaced ", "a,b", "", "'x'",
        ] {
            assert_eq!(
                env_value(text),
                Value::from(text.trim().to_string()),
                "{text}"
            );
        }
        assert_eq!(
            env_value(r#"["/a/", "/b/"]"#),
            Value::from(vec!["/a/".to_string(), "/b/".to_string()])
        );
        assert_eq!(env_value(r#""quoted""#), Value::from("quoted".to_string()));
        // Not a list after all: kept as it is.
        assert_eq!(env_value("[oops"), Value::from("[oops".to_string()));
    }

    #[test]
    fn parse_errors_do_not_quote_the_file() {
        let msg = "TOML parse error at line 3, column 11\n  |\n3 | secret = \"ab\\qc-s3cr3t\"\n  |           ^\ninvalid escape sequence\n";
        let out = without_source_lines(msg);
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(
            out.contains("line 3, column 11") && out.contains("invalid escape"),
            "{out}"
        );
        assert!(
            is_secret_key("cookie_secret") && is_secret_key("secret") && is_secret_key("redis_url")
        );
        assert!(!is_secret_key("appid"));
    }

    #[test]
    fn tables_merge_key_by_key() {
        let mut into = Dict::new();
        for (k, v) in [
            ("a.b", "1"),
            ("a.c", "2"),
            ("a.d.e", "3"),
            ("a.b", "4"),
            ("f", "5"),
        ] {
            let nested = figment::util::nest(k, env_value(v)).into_dict().unwrap();
            merge_into(&mut into, nested);
        }
        let a = into["a"].as_dict().unwrap();
        assert_eq!(a["b"], Value::from("4".to_string()), "the later value wins");
        assert_eq!(a["c"], Value::from("2".to_string()));
        assert_eq!(a["d"].as_dict().unwrap()["e"], Value::from("3".to_string()));
        assert_eq!(into["f"], Value::from("5".to_string()));
    }
}
