//! Go's scalar syntaxes, because the kubelet parses its flags and config with Go:
//! `strconv.ParseBool`, `strconv.ParseInt(s, 0, 32)` and `time.ParseDuration`.

/// `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean")),
    }
}

/// `strconv.ParseInt(s, 0, 32)`: the base comes from the prefix (`0x`, `0o`, `0b`, or a
/// leading `0` for octal), and underscores may separate digits.
pub fn parse_int32(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not an integer");
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest.to_owned())
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest.to_owned())
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest.to_owned())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_owned())
    } else {
        (10, lower)
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') {
        return Err(bad());
    }
    if digits.contains("__") {
        return Err(bad());
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    if !clean.chars().all(|c| c.is_digit(radix)) {
        return Err(bad());
    }
    let magnitude = i64::from_str_radix(&clean, radix).map_err(|_| bad())?;
    let value = if negative { -magnitude } else { magnitude };
    if i32::try_from(value).is_err() {
        return Err(format!("{s:?} is out of range for a 32-bit integer"));
    }
    Ok(value)
}

/// `time.ParseDuration`, in nanoseconds: `4h0m0s`, `5m`, `1.5h`, `300ms`, `-1s`, `0`.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = |why: &str| format!("{s:?} is not a duration: {why}");
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad("expected a number"));
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err(bad("missing unit")),
            _ => return Err(bad("unknown unit")),
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| bad("overflow"))?
        };
        total = whole
            .checked_mul(scale)
            .and_then(|v| v.checked_add(total))
            .ok_or_else(|| bad("overflow"))?;
        // Fractions: Go keeps the digits that still matter at nanosecond scale.
        let mut frac_scale = scale;
        for d in frac_part.bytes().take(30) {
            frac_scale /= 10;
            total += u128::from(d - b'0') * frac_scale;
        }
        if total > 1 << 63 {
            return Err(bad("overflow"));
        }
        rest = after;
    }
    let total = i128::try_from(total).map_err(|_| bad("overflow"))?;
    let signed = if negative { -total } else { total };
    i64::try_from(signed).map_err(|_| bad("overflow"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        let cases = [
            ("0", Some(0)),
            ("4h0m0s", Some(4 * 3_600_000_000_000)),
            ("5m", Some(300_000_000_000)),
            ("1.5h", Some(5_400_000_000_000)),
            ("300ms", Some(300_000_000)),
            ("-1s", Some(-1_000_000_000)),
            ("0s", Some(0)),
            (".5s", Some(500_000_000)),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_duration(input).ok(),
                want,
                "parse_duration({input:?})"
            );
        }
        for bad in ["", "5", "h", "1x", "1.s.", "--1s", "9999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must not parse");
        }
    }

    #[test]
    fn ints_and_bools_parse_like_go() {
        assert_eq!(parse_int32("10255"), Ok(10255));
        assert_eq!(parse_int32("0x10"), Ok(16));
        assert_eq!(parse_int32("010"), Ok(8));
        assert_eq!(parse_int32("-1"), Ok(-1));
        assert_eq!(parse_int32("1_000"), Ok(1000));
        assert!(parse_int32("abc").is_err());
        assert!(parse_int32("99999999999").is_err());
        assert_eq!(parse_bool("True"), Ok(true));
        assert_eq!(parse_bool("0"), Ok(false));
        assert!(parse_bool("yes").is_err());
    }
}
