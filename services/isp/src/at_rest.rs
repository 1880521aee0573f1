//! Free text and answers that never leave an agency (the rationale for sharing without
//! consent, DASH answers, a reciprocal application's areas and needs, a decline's reason)
//! are kept encrypted in the agency's database: age, to the agency's own key. A copy of the
//! database file, a backup or a database administrator sees ciphertext; the service, which
//! holds the key, reads them. Values sealed before a key rotation stay readable: the agency
//! keeps its retired age identities.

use base64::{Engine as _, engine::general_purpose::STANDARD};

use crate::{AgencyKeys, IspError};

/// Marks a stored value as sealed (anything else is refused on reading).
const PREFIX: &str = "age:";

impl AgencyKeys {
    /// `text` sealed to this agency's own key, for a database column. Empty stays empty.
    pub fn seal_at_rest(&self, text: &str) -> Result<String, IspError> {
        if text.is_empty() {
            return Ok(String::new());
        }
        let sealed = age::encrypt(&self.age_identity.to_public(), text.as_bytes()).map_err(|e| IspError::Encrypt(e.to_string()))?;
        Ok(format!("{PREFIX}{}", STANDARD.encode(sealed)))
    }

    /// A column value written by [`AgencyKeys::seal_at_rest`], opened.
    pub fn open_at_rest(&self, stored: &str) -> Result<String, IspError> {
        if stored.is_empty() {
            return Ok(String::new());
        }
        let unreadable = |detail: &str| IspError::Invalid { what: "a value stored encrypted".into(), detail: detail.into() };
        let bytes = STANDARD.decode(stored.strip_prefix(PREFIX).ok_or_else(|| unreadable("it is not sealed"))?).map_err(|_| unreadable("it is not base64"))?;
        let plaintext = crate::seal::decrypt(self, &bytes).map_err(|_| unreadable("none of this agency's keys opens it"))?;
        String::from_utf8(plaintext).map_err(|_| unreadable("it is not text"))
    }
}

#[cfg(test)]
mod tests {
    use crate::AgencyKeys;

    #[test]
    fn values_at_rest_are_sealed_to_the_agency_and_survive_rotation() {
        let keys = AgencyKeys::generate("housing-test", AgencyKeys::generate_subject_key());
        let sealed = keys.seal_at_rest("He reads her messages").unwrap();
        assert!(sealed.starts_with("age:") && !sealed.contains("messages"));
        assert_eq!(keys.open_at_rest(&sealed).unwrap(), "He reads her messages");
        assert_eq!(keys.seal_at_rest("").unwrap(), "");
        let rotated = keys.rotated();
        assert_eq!(rotated.open_at_rest(&sealed).unwrap(), "He reads her messages", "a rotation made old values unreadable");
        let other = AgencyKeys::generate("idva-test", AgencyKeys::generate_subject_key());
        assert!(other.open_at_rest(&sealed).is_err(), "another agency opened it");
        assert!(keys.open_at_rest("plain text").is_err());
    }
}
