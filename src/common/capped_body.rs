//! Reading an HTTP answer of a peer we call (WeChat, WeCom, the account-linking hook) with a
//! cap on its size, so a peer cannot make the gateway hold more than that in memory.

/// Why a capped read gave no body.
#[derive(Debug)]
pub(crate) enum CappedError {
    /// Longer than the cap (announced by Content-Length or found while reading).
    TooLarge,
    /// The read failed (timed out, cut short); never formatted by callers whose URL holds a
    /// secret.
    Read(reqwest::Error),
}

/// The whole body of `resp`, at most `max` bytes.
pub(crate) async fn read_capped(
    resp: &mut reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, CappedError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(CappedError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(CappedError::Read)? {
        if body.len() + chunk.len() > max {
            return Err(CappedError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
