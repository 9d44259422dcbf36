//! Mini-program user-data crypto (`encryptedData` / `iv` from `getUserInfo` / `getUserProfile`).
//!
//! AES-128-CBC with key = base64(session_key) (16 bytes), iv = base64(iv) (16 bytes) and strict
//! PKCS#7 padding. The plaintext is camelCase JSON whose `watermark.appid` must equal the mini
//! program's appid. Error messages never contain the key, the iv or any plaintext.

use aes::Aes128;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use serde_json::Value;

type Aes128CbcDec = cbc::Decryptor<Aes128>;
type Aes128CbcEnc = cbc::Encryptor<Aes128>;

/// Why mini-program user data could not be decrypted or verified.
///
/// The messages are safe to log and to show: they never contain the session key, the iv, the
/// ciphertext or the plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("session_key is not valid base64")]
    SessionKeyNotBase64,
    #[error("session_key must decode to 16 bytes, got {0}")]
    SessionKeyLength(usize),
    #[error("encryptedData is not valid base64")]
    DataNotBase64,
    #[error("iv is not valid base64")]
    IvNotBase64,
    #[error("iv must decode to 16 bytes, got {0}")]
    IvLength(usize),
    #[error("encryptedData must be a non-empty multiple of 16 bytes, got {0} bytes")]
    CiphertextLength(usize),
    #[error(
        "encryptedData has bad padding after decryption (wrong session_key or iv; \
         was wx.login() called after the data was fetched?)"
    )]
    BadPadding,
    #[error("decrypted user data is not a JSON object")]
    NotJson,
    #[error("decrypted user data has no watermark.appid")]
    WatermarkMissing,
    #[error("decrypted user data watermark.appid does not match the mini program appid")]
    WatermarkMismatch,
    #[error("decrypted user data belongs to another user")]
    OtherUser,
}

/// Decoded, verified mini-program user data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiniUserData {
    pub open_id: Option<String>,
    pub union_id: Option<String>,
    pub nick_name: Option<String>,
    pub avatar_url: Option<String>,
    pub watermark_appid: String,
    pub watermark_timestamp: Option<i64>,
}

/// Standard base64, tolerating ASCII whitespace (line breaks copied from samples and the like).
fn b64_decode(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    if s.bytes().any(|b| b.is_ascii_whitespace()) {
        let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        STANDARD.decode(compact)
    } else {
        STANDARD.decode(s)
    }
}

/// Decrypts `encryptedData` with the session key and iv (all base64) and returns the plaintext.
pub(crate) fn decrypt_user_data(
    session_key_b64: &str,
    encrypted_b64: &str,
    iv_b64: &str,
) -> Result<Vec<u8>, CryptoError> {
    let key = b64_decode(session_key_b64).map_err(|_| CryptoError::SessionKeyNotBase64)?;
    let key: [u8; 16] = key
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::SessionKeyLength(key.len()))?;
    let iv = b64_decode(iv_b64).map_err(|_| CryptoError::IvNotBase64)?;
    let iv: [u8; 16] = iv
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::IvLength(iv.len()))?;
    let data = b64_decode(encrypted_b64).map_err(|_| CryptoError::DataNotBase64)?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(CryptoError::CiphertextLength(data.len()));
    }
    Aes128CbcDec::new(&key.into(), &iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(&data)
        .map_err(|_| CryptoError::BadPadding)
}

/// Encrypts `plaintext` (AES-128-CBC, PKCS#7) and returns the base64 ciphertext. Used by the mock.
pub fn encrypt_user_data(key: &[u8; 16], iv: &[u8; 16], plaintext: &[u8]) -> String {
    let ct = Aes128CbcEnc::new(key.into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    STANDARD.encode(ct)
}

fn opt_string(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Decrypts the user data, parses it and requires `watermark.appid == expected_appid`.
pub fn decrypt_and_verify(
    session_key_b64: &str,
    encrypted_b64: &str,
    iv_b64: &str,
    expected_appid: &str,
) -> Result<MiniUserData, CryptoError> {
    let plain = decrypt_user_data(session_key_b64, encrypted_b64, iv_b64)?;
    // Be as lenient as with the HTTP APIs: lossy UTF-8, raw control characters in strings.
    let text = String::from_utf8_lossy(&plain);
    let text = crate::providers::wechat::sanitize_json(text.trim_start_matches('\u{feff}'));
    let value: Value = serde_json::from_str(&text).map_err(|_| CryptoError::NotJson)?;
    let Value::Object(obj) = value else {
        return Err(CryptoError::NotJson);
    };
    let watermark = obj.get("watermark").and_then(Value::as_object);
    let watermark_appid = watermark
        .and_then(|w| w.get("appid"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(CryptoError::WatermarkMissing)?;
    if watermark_appid != expected_appid {
        return Err(CryptoError::WatermarkMismatch);
    }
    let watermark_timestamp = watermark
        .and_then(|w| w.get("timestamp"))
        .and_then(|t| match t {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        });
    Ok(MiniUserData {
        open_id: opt_string(obj.get("openId")),
        union_id: opt_string(obj.get("unionId")),
        nick_name: opt_string(obj.get("nickName")),
        avatar_url: opt_string(obj.get("avatarUrl")),
        watermark_appid: watermark_appid.to_string(),
        watermark_timestamp,
    })
}

/// The one answer to every mini-program user-data failure (bad base64, key or iv length,
/// padding, not JSON, watermark, another user's data): a difference would be an oracle.
pub(crate) const INVALID_ENCRYPTED_DATA: &str = "encryptedData could not be decrypted or verified";

impl crate::common::error::ProviderError for CryptoError {
    fn class(&self) -> crate::common::error::ErrorClass {
        crate::common::error::ErrorClass::InvalidInput
    }

    fn code(&self) -> &'static str {
        "invalid_encrypted_data"
    }

    fn texts(
        &self,
    ) -> (
        crate::common::pages::Text<'static>,
        crate::common::pages::Text<'static>,
    ) {
        use crate::common::pages::Text;
        (
            Text {
                zh: "请求无效",
                en: "Bad request",
            },
            Text {
                zh: "请求无效。",
                en: "The request is invalid.",
            },
        )
    }

    fn json_message(&self) -> Option<&'static str> {
        Some(INVALID_ENCRYPTED_DATA)
    }

    fn log(&self) {
        // The details only here: the messages name no key, iv, data or plaintext.
        tracing::debug!(error = %self, "mini-program user data rejected");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // WeChat's published sample (official decryption demos; also wechatpy's tests).
    const SAMPLE_APPID: &str = "wx4f4bc4dec97d474b";
    const SAMPLE_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
    const SAMPLE_IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
    const SAMPLE_DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";

    const KEY: [u8; 16] = *b"0123456789abcdef";
    const IV: [u8; 16] = *b"fedcba9876543210";

    fn b64(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    #[test]
    fn wechat_sample_vector() {
        let data = decrypt_and_verify(SAMPLE_KEY, SAMPLE_DATA, SAMPLE_IV, SAMPLE_APPID).unwrap();
        assert_eq!(
            data.open_id.as_deref(),
            Some("oGZUI0egBJY1zhBYw2KhdUfwVJJE")
        );
        assert_eq!(
            data.union_id.as_deref(),
            Some("ocMvos6NjeKLIBqg5Mr9QjxrP1FA")
        );
        assert_eq!(data.nick_name.as_deref(), Some("Band"));
        assert_eq!(data.watermark_appid, SAMPLE_APPID);
        assert_eq!(data.watermark_timestamp, Some(1477314187));
        assert!(data
            .avatar_url
            .as_deref()
            .is_some_and(|u| u.starts_with("http://wx.qlogo.cn/mmopen/")));
    }

    #[test]
    fn wechat_sample_with_line_breaks() {
        let wrapped: String = SAMPLE_DATA
            .as_bytes()
            .chunks(32)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\n                ");
        let data = decrypt_and_verify(SAMPLE_KEY, &wrapped, SAMPLE_IV, SAMPLE_APPID).unwrap();
        assert_eq!(
            data.open_id.as_deref(),
            Some("oGZUI0egBJY1zhBYw2KhdUfwVJJE")
        );
    }

    #[test]
    fn wechat_sample_other_appid_is_rejected() {
        let err = decrypt_and_verify(SAMPLE_KEY, SAMPLE_DATA, SAMPLE_IV, "wx4000000000000004")
            .unwrap_err();
        assert_eq!(err, CryptoError::WatermarkMismatch);
    }

    #[test]
    fn round_trip() {
        for len in [0usize, 1, 15, 16, 17, 100] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let ct = encrypt_user_data(&KEY, &IV, &plain);
            assert_eq!(
                decrypt_user_data(&b64(&KEY), &ct, &b64(&IV)).unwrap(),
                plain
            );
        }
        let json =
            r#"{"openId":"o1","nickName":"Alice 🐼","watermark":{"appid":"wxA","timestamp":"17"}}"#;
        let ct = encrypt_user_data(&KEY, &IV, json.as_bytes());
        let data = decrypt_and_verify(&b64(&KEY), &ct, &b64(&IV), "wxA").unwrap();
        assert_eq!(data.nick_name.as_deref(), Some("Alice 🐼"));
        assert_eq!(data.union_id, None);
        assert_eq!(data.avatar_url, None);
        assert_eq!(data.watermark_timestamp, Some(17));
    }

    #[test]
    fn raw_control_character_in_nickname_is_tolerated() {
        let json =
            "{\"openId\":\"o1\",\"nickName\":\"王小明\u{7}\",\"watermark\":{\"appid\":\"wxA\"}}";
        let ct = encrypt_user_data(&KEY, &IV, json.as_bytes());
        let data = decrypt_and_verify(&b64(&KEY), &ct, &b64(&IV), "wxA").unwrap();
        assert_eq!(data.nick_name.as_deref(), Some("王小明\u{7}"));
        assert_eq!(data.watermark_timestamp, None);
    }

    #[test]
    fn errors() {
        let key = b64(&KEY);
        let iv = b64(&IV);
        let ct = encrypt_user_data(&KEY, &IV, b"{}");
        let cases: Vec<(CryptoError, CryptoError)> = vec![
            (
                decrypt_user_data("not base64!", &ct, &iv).unwrap_err(),
                CryptoError::SessionKeyNotBase64,
            ),
            (
                decrypt_user_data(&b64(&[1u8; 24]), &ct, &iv).unwrap_err(),
                CryptoError::SessionKeyLength(24),
            ),
            (
                decrypt_user_data(&key, "%%%", &iv).unwrap_err(),
                CryptoError::DataNotBase64,
            ),
            (
                decrypt_user_data(&key, &ct, "???").unwrap_err(),
                CryptoError::IvNotBase64,
            ),
            (
                decrypt_user_data(&key, &ct, &b64(&[0u8; 12])).unwrap_err(),
                CryptoError::IvLength(12),
            ),
            (
                decrypt_user_data(&key, "", &iv).unwrap_err(),
                CryptoError::CiphertextLength(0),
            ),
            (
                decrypt_user_data(&key, &b64(&[0u8; 20]), &iv).unwrap_err(),
                CryptoError::CiphertextLength(20),
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
        // Wrong key: the padding check fails (with overwhelming probability, and for this key).
        let other_key = b64(b"another key 16b!");
        let long_ct = encrypt_user_data(&KEY, &IV, &[b'x'; 64]);
        assert_eq!(
            decrypt_user_data(&other_key, &long_ct, &iv).unwrap_err(),
            CryptoError::BadPadding
        );
    }

    #[test]
    fn padding_is_strict() {
        // A final block ending in ..., 0x05, 0x03, 0x03 is not valid PKCS#7 for n = 3.
        let mut block = [b'a'; 16];
        block[13] = 5;
        block[14] = 3;
        block[15] = 3;
        let ct = Aes128CbcEnc::new(&KEY.into(), &IV.into())
            .encrypt_padded_vec_mut::<cbc::cipher::block_padding::NoPadding>(&block);
        assert_eq!(
            decrypt_user_data(&b64(&KEY), &b64(&ct), &b64(&IV)).unwrap_err(),
            CryptoError::BadPadding
        );
        // Padding byte 0 and padding byte > 16 are rejected too.
        for last in [0u8, 17] {
            let mut block = [b'a'; 16];
            block[15] = last;
            let ct = Aes128CbcEnc::new(&KEY.into(), &IV.into())
                .encrypt_padded_vec_mut::<cbc::cipher::block_padding::NoPadding>(&block);
            assert_eq!(
                decrypt_user_data(&b64(&KEY), &b64(&ct), &b64(&IV)).unwrap_err(),
                CryptoError::BadPadding
            );
        }
    }

    #[test]
    fn json_and_watermark_errors() {
        let key = b64(&KEY);
        let iv = b64(&IV);
        let verify = |plain: &[u8]| {
            let ct = encrypt_user_data(&KEY, &IV, plain);
            decrypt_and_verify(&key, &ct, &iv, "wxA")
        };
        assert_eq!(verify(b"not json").unwrap_err(), CryptoError::NotJson);
        assert_eq!(verify(b"[1,2]").unwrap_err(), CryptoError::NotJson);
        assert_eq!(
            verify(b"{\"openId\":\"o\"}").unwrap_err(),
            CryptoError::WatermarkMissing
        );
        assert_eq!(
            verify(b"{\"watermark\":{\"timestamp\":1}}").unwrap_err(),
            CryptoError::WatermarkMissing
        );
        assert_eq!(
            verify(b"{\"watermark\":{\"appid\":\"wxB\"}}").unwrap_err(),
            CryptoError::WatermarkMismatch
        );
    }

    #[test]
    fn messages_hold_no_secrets() {
        let secret_json = r#"{"openId":"oSECRETOPENID","watermark":{"appid":"wxOTHER"}}"#;
        let ct = encrypt_user_data(&KEY, &IV, secret_json.as_bytes());
        let key = b64(&KEY);
        let iv = b64(&IV);
        let errs = [
            decrypt_and_verify(&key, &ct, &iv, "wxA").unwrap_err(),
            decrypt_user_data(&b64(b"another key 16b!"), &ct, &iv).unwrap_err(),
            decrypt_user_data(&key, &ct, "AAAA").unwrap_err(),
        ];
        for e in errs {
            let msg = format!("{e} {e:?}");
            for needle in [
                key.as_str(),
                iv.as_str(),
                ct.as_str(),
                "oSECRETOPENID",
                "wxOTHER",
            ] {
                assert!(!msg.contains(needle), "{msg}");
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]

        /// Any strings as key, data and iv: an answer, never a panic.
        #[test]
        fn decrypt_any_strings(key in "[A-Za-z0-9+/=\\s%]{0,40}",
                               data in "[A-Za-z0-9+/=\\s%]{0,100}",
                               iv in "[A-Za-z0-9+/=\\s%]{0,40}",
                               other in proptest::prelude::any::<String>()) {
            let _ = decrypt_and_verify(&key, &data, &iv, "wxA");
            let _ = decrypt_and_verify(&other, &other, &other, &other);
            let _ = decrypt_user_data(&key, &other, &iv);
        }

        /// The right key and iv over any plaintext (JSON-like or not): an answer, never a
        /// panic; and any tampering with a ciphertext is an error or a verified result.
        #[test]
        fn decrypt_any_plaintext(plain in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
                                 json_ish in "\\{\"watermark\":\\{\"appid\":\"wx[AB]\"\\}(,\"[a-zA-Z]{1,8}\":(\"[^\"]{0,8}\"|[0-9]{1,3}|null))?\\}",
                                 flip in 0usize..64, bit in 0u8..8) {
            let key = b64(&KEY);
            let iv = b64(&IV);
            for p in [plain.as_slice(), json_ish.as_bytes()] {
                let ct = encrypt_user_data(&KEY, &IV, p);
                if let Ok(d) = decrypt_and_verify(&key, &ct, &iv, "wxA") {
                    proptest::prop_assert_eq!(d.watermark_appid, "wxA");
                }
                let mut raw = STANDARD.decode(&ct).unwrap();
                let at = flip % raw.len();
                raw[at] ^= 1 << bit;
                let _ = decrypt_and_verify(&key, &STANDARD.encode(&raw), &iv, "wxA");
            }
        }
    }
}
