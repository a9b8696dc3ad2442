//! The session's properties: userData (SetDisposition, a key of userData
//! as in the Genesys Web Services API, AttachUserData, UpdateUserData,
//! DeleteUserData) and the comment (AddComment). Each announces the whole
//! session object in a PropertiesUpdated, which changes nothing the
//! customer sees: their view of a session is its id, state and visible
//! participants only, so neither userData nor the comment reaches them.

use serde_json::Value;

use super::draft::Draft;
use super::error::OpError;
use super::params::MAX_USER_DATA_KEYS;
use crate::model::NotificationType;

pub fn set(
    d: &mut Draft<'_>,
    data: impl IntoIterator<Item = (String, Value)>,
) -> Result<(), OpError> {
    for (k, v) in data {
        d.next.user_data.insert(k, v);
    }
    if d.next.user_data.len() > MAX_USER_DATA_KEYS {
        return Err(OpError::bad(format!(
            "userData would exceed {MAX_USER_DATA_KEYS} keys"
        )));
    }
    d.emit_state(NotificationType::PropertiesUpdated);
    Ok(())
}

pub fn delete(d: &mut Draft<'_>, keys: &[String]) {
    for k in keys {
        d.next.user_data.remove(k);
    }
    d.emit_state(NotificationType::PropertiesUpdated);
}

/// AddComment: the session's comment becomes `text`.
pub fn comment(d: &mut Draft<'_>, text: &str) {
    d.next.comment = Some(text.to_owned());
    d.emit_state(NotificationType::PropertiesUpdated);
}
