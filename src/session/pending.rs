//! What `/login` leaves behind for `/callback`.

use serde::{Deserialize, Serialize};

use super::record::Origin;

/// What `/login` leaves behind for `/callback`: where to go, and through which login. (Which
/// browser started it is in the signed state.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingLogin {
    pub rd: String,
    pub origin: Origin,
}

impl PendingLogin {
    /// Longer than any checked return URL. Callers pass a checked `rd`; every store refuses
    /// a longer one anyway, so no store holds more than that for an unauthenticated `/login`.
    pub(super) fn too_large(&self) -> bool {
        self.rd.len() > crate::common::redirect::MAX_RD
    }
}
