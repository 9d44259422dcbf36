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
