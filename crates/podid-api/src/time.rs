//! Timestamps as the AWS `rest-json` protocol carries them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time kept with millisecond precision, carried on the wire as
/// epoch seconds in a JSON number (the `rest-json` default for timestamps,
/// which botocore and the AWS SDKs parse as fractional seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EpochMillis(pub i64);

impl EpochMillis {
    /// Whole seconds since the epoch, rounded down.
    pub fn seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }
}

impl Serialize for EpochMillis {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 % 1000 == 0 {
            serializer.serialize_i64(self.0 / 1000)
        } else {
            serializer.serialize_f64(self.0 as f64 / 1000.0)
        }
    }
}

impl<'de> Deserialize<'de> for EpochMillis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let seconds = f64::deserialize(deserializer)?;
        Ok(EpochMillis((seconds * 1000.0).round() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_are_integers_and_fractions_keep_millis() {
        assert_eq!(
            serde_json::to_string(&EpochMillis(1_700_000_000_000)).unwrap(),
            "1700000000"
        );
        assert_eq!(
            serde_json::to_string(&EpochMillis(1_700_000_000_123)).unwrap(),
            "1700000000.123"
        );
        let back: EpochMillis = serde_json::from_str("1700000000.123").unwrap();
        assert_eq!(back, EpochMillis(1_700_000_000_123));
        assert_eq!(EpochMillis(1_700_000_000_999).seconds(), 1_700_000_000);
    }
}
