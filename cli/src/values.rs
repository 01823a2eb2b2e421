//! Values typed on the command line: durations and sizes, parsed by clap so that an
//! absurd one (too large for the arithmetic behind it, zero where zero means nothing,
//! negative) is refused before anything runs, in one line naming its argument.

use std::time::Duration;

/// A duration argument (`30s`, 15m, 1h, 7d, 500ms; at most 100 years) and the text it was
/// given as, for messages.
#[derive(Debug, Clone)]
pub struct DurationArg {
    /// As typed.
    pub text: String,
    /// Its value.
    pub value: Duration,
}

impl std::fmt::Display for DurationArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parse a duration argument (see [`floe_table_format::vacuum::parse_duration`]).
pub fn duration(s: &str) -> Result<DurationArg, String> {
    let value = floe_table_format::vacuum::parse_duration(s).map_err(|e| match e {
        floe_table_format::Error::InvalidArgument { reason, .. } => reason,
        other => other.to_string(),
    })?;
    Ok(DurationArg {
        text: s.to_string(),
        value,
    })
}

/// The largest size accepted: 1 PiB.
const MAX_SIZE: f64 = (1u64 << 50) as f64;

/// Like [`size`], but `0` is accepted (it turns the thing off).
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub fn size_or_zero(s: &str) -> Result<usize, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    size(s)
}

/// Parse `64MB`, `64MiB`, `1g`, `512k` or a plain byte count, from one byte to 1 PiB.
/// Decimal and binary units both mean powers of 1024, as memory sizes usually do.
pub fn size(s: &str) -> Result<usize, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("invalid size '{s}': expected e.g. 64MB"))?;
    let factor: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("invalid size '{s}': unknown unit '{other}'")),
    };
    let bytes = number * factor;
    if bytes.is_nan() || bytes < 1.0 {
        return Err(format!("invalid size '{s}': must be at least one byte"));
    }
    if bytes > MAX_SIZE {
        return Err(format!("invalid size '{s}': more than 1 PiB"));
    }
    // At most 2^50: exact in f64 and in usize on every platform Floe builds for.
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_within_bounds() {
        assert_eq!(size("64MB"), Ok(64 << 20));
        assert_eq!(size("64mib"), Ok(64 << 20));
        assert_eq!(size("1g"), Ok(1 << 30));
        assert_eq!(size("512"), Ok(512));
        assert_eq!(size("1048576g"), Ok(1 << 50));
        for bad in [
            "0",
            "0.5",
            "12 parsecs",
            "MB",
            "1048577g",
            "99999999999999999999999999",
            "-1",
        ] {
            assert!(size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_parse_within_bounds() {
        let d = |s: &str| duration(s).map(|d| d.value);
        assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(d("0s"), Ok(Duration::ZERO));
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("36500d"), Ok(Duration::from_secs(36_500 * 86_400)));
        assert_eq!(duration("7d").map(|d| d.to_string()), Ok("7d".into()));
        for bad in [
            "36501d",
            "999999999999999d",
            "18446744073709551615s",
            "18446744073709551615ms",
            "99999999999999999999d",
            "-1d",
            "1.5h",
            "",
            "d",
            "7",
        ] {
            let e = d(bad).expect_err(bad);
            assert!(!e.is_empty(), "{bad}");
        }
        assert!(d("36501d").unwrap_err().contains("100 years"));
        assert!(d("99999999999999999999d")
            .unwrap_err()
            .contains("100 years"));
    }
}
