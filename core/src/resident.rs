//! Resident registration numbers (주민등록번호): a string comes in, a [`ResidentNumber`] whose birth date is real comes
//! out, or a [`ResidentNumberError`] that says what is wrong without repeating the number. No IO happens here.
//!
//! The format is `YYMMDD-GNNNNNN` (the dash optional): the first six digits are the birth date, and G gives the century
//! and the holder's sex: 1/2 born in the 1900s, 3/4 in the 2000s, 5/6 and 7/8 the same for foreign residents, 9/0 in
//! the 1800s. The date must exist in that century (`000229-3…` is 2000-02-29; `000229-1…` would be 1900-02-29, which
//! did not exist). Numbers issued since October 2020 end in random digits, so no checksum is ever required.
//!
//! The number is personal data under PIPA (개인정보 보호법): a [`ResidentNumber`] formats (Debug and Display) only as its
//! masked form `YYMMDD-G******`, so no log line or error can show it by accident. The digits themselves are reached
//! only through [`ResidentNumber::expose_digits`], whose one use is encryption at rest.

use std::fmt;

use chrono::NaiveDate;

/// Digits in a resident number.
pub const RESIDENT_NUMBER_DIGITS: usize = 13;

/// What a valid number's seventh digit says about the century of birth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Century {
    /// 9 and 0.
    Nineteenth,
    /// 1, 2, 5, 6.
    Twentieth,
    /// 3, 4, 7, 8.
    TwentyFirst,
}

impl Century {
    /// The first year of the century, as a YY birth year is added to it.
    #[must_use]
    pub fn first_year(self) -> i32 {
        match self {
            Century::Nineteenth => 1800,
            Century::Twentieth => 1900,
            Century::TwentyFirst => 2000,
        }
    }

    /// Written for messages: "the 1900s".
    #[must_use]
    pub fn words(self) -> &'static str {
        match self {
            Century::Nineteenth => "the 1800s",
            Century::Twentieth => "the 1900s",
            Century::TwentyFirst => "the 2000s",
        }
    }
}

/// Whether the holder registered as a citizen or as a foreign resident (5–8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    Citizen,
    Foreigner,
}

/// The sex the seventh digit records: odd digits (and 9) male, even digits (and 0) female.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Male,
    Female,
}

/// The century, registration and sex the seventh digit `g` stands for. Every digit stands for one.
#[must_use]
pub fn category(g: u8) -> (Century, Registration, Sex) {
    let century = match g {
        9 | 0 => Century::Nineteenth,
        1 | 2 | 5 | 6 => Century::Twentieth,
        _ => Century::TwentyFirst,
    };
    let registration = if (5..=8).contains(&g) { Registration::Foreigner } else { Registration::Citizen };
    let sex = if g % 2 == 1 { Sex::Male } else { Sex::Female };
    (century, registration, sex)
}

/// Why a string is not a resident number. The messages never repeat the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResidentNumberError {
    #[error("must be YYMMDD-GNNNNNN: 13 digits, the dash after the sixth optional")]
    Format,
    #[error("the first six digits are not a real date in {}, the century the seventh digit gives", .0.words())]
    BirthDate(Century),
}

/// A resident registration number with a real birth date. It never formats in full: Debug and Display show
/// `YYMMDD-G******`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResidentNumber {
    /// The 13 ASCII digits, without the dash.
    digits: [u8; RESIDENT_NUMBER_DIGITS],
    birth_date: NaiveDate,
}

impl ResidentNumber {
    /// Parses `YYMMDD-GNNNNNN` or the 13 digits without the dash, around which spaces are ignored.
    ///
    /// # Errors
    /// [`ResidentNumberError::Format`] for anything but that shape (other separators, full-width digits, a wrong
    /// length), [`ResidentNumberError::BirthDate`] for a date that does not exist in the century the seventh digit
    /// gives. There is no checksum to fail.
    pub fn parse(s: &str) -> Result<Self, ResidentNumberError> {
        let s = s.trim();
        let b = s.as_bytes();
        let joined: Vec<u8> = match b.len() {
            14 if b[6] == b'-' => b[..6].iter().chain(&b[7..]).copied().collect(),
            RESIDENT_NUMBER_DIGITS => b.to_vec(),
            _ => return Err(ResidentNumberError::Format),
        };
        let digits: [u8; RESIDENT_NUMBER_DIGITS] = joined.try_into().map_err(|_| ResidentNumberError::Format)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(ResidentNumberError::Format);
        }
        let n = |i: usize| u32::from(digits[i] - b'0');
        let (century, _, _) = category(digits[6] - b'0');
        let year = century.first_year() + i32::try_from(n(0) * 10 + n(1)).unwrap_or(0);
        let birth_date =
            NaiveDate::from_ymd_opt(year, n(2) * 10 + n(3), n(4) * 10 + n(5)).ok_or(ResidentNumberError::BirthDate(century))?;
        Ok(ResidentNumber { digits, birth_date })
    }

    #[must_use]
    pub fn birth_date(&self) -> NaiveDate {
        self.birth_date
    }

    /// The century, registration and sex of the seventh digit.
    #[must_use]
    pub fn category(&self) -> (Century, Registration, Sex) {
        category(self.digits[6] - b'0')
    }

    /// The only form shown anywhere: `YYMMDD-G******`.
    #[must_use]
    pub fn masked(&self) -> String {
        let shown = String::from_utf8_lossy(&self.digits[..7]);
        format!("{}-{}******", &shown[..6], &shown[6..])
    }

    /// The 13 digits, without the dash. Only for encrypting the number at rest; never format, log or return them.
    #[must_use]
    pub fn expose_digits(&self) -> &[u8; RESIDENT_NUMBER_DIGITS] {
        &self.digits
    }
}

impl fmt::Debug for ResidentNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResidentNumber({})", self.masked())
    }
}

impl fmt::Display for ResidentNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// The masked form of a raw string that may or may not be a resident number, for a type that holds one as text:
/// the masked number when it parses, `[redacted]` otherwise (a malformed value may still be most of a real number).
#[must_use]
pub fn masked_text(raw: &str) -> String {
    ResidentNumber::parse(raw).map_or_else(|_| "[redacted]".to_owned(), |n| n.masked())
}

/// Whether `text` holds anything shaped like a resident number (six digits, an optional dash, seven digits), valid or
/// not. Free-text fields (an employee id, a name) are refused when it does, so that a number sent in the wrong field is
/// not stored in plain.
#[must_use]
pub fn contains_resident_number_shape(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |from: usize, n: usize| b.get(from..from + n).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    (0..b.len()).any(|i| {
        if !digits(i, 6) {
            return false;
        }
        let rest = if b.get(i + 6) == Some(&b'-') { i + 7 } else { i + 6 };
        digits(rest, 7)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn every_century_digit_gives_its_century() {
        // (seventh digit, birth year of YY = 90, registration, sex)
        let cases = [
            (1, 1990, Registration::Citizen, Sex::Male),
            (2, 1990, Registration::Citizen, Sex::Female),
            (3, 2090, Registration::Citizen, Sex::Male),
            (4, 2090, Registration::Citizen, Sex::Female),
            (5, 1990, Registration::Foreigner, Sex::Male),
            (6, 1990, Registration::Foreigner, Sex::Female),
            (7, 2090, Registration::Foreigner, Sex::Male),
            (8, 2090, Registration::Foreigner, Sex::Female),
            (9, 1890, Registration::Citizen, Sex::Male),
            (0, 1890, Registration::Citizen, Sex::Female),
        ];
        for (g, year, registration, sex) in cases {
            let n = ResidentNumber::parse(&format!("900101-{g}234567")).unwrap();
            assert_eq!(n.birth_date(), date(year, 1, 1), "digit {g}");
            let (_, r, s) = n.category();
            assert_eq!((r, s), (registration, sex), "digit {g}");
        }
        assert_eq!(ResidentNumber::parse("050315-3123456").unwrap().birth_date(), date(2005, 3, 15));
    }

    #[test]
    fn the_date_must_exist_in_its_century() {
        // 2000 was a leap year, 1900 and 1800 were not.
        assert_eq!(ResidentNumber::parse("000229-3123456").unwrap().birth_date(), date(2000, 2, 29));
        assert_eq!(ResidentNumber::parse("000229-1123456"), Err(ResidentNumberError::BirthDate(Century::Twentieth)));
        assert_eq!(ResidentNumber::parse("000229-9123456"), Err(ResidentNumberError::BirthDate(Century::Nineteenth)));
        assert_eq!(ResidentNumber::parse("040229-1123456").unwrap().birth_date(), date(1904, 2, 29));
        for bad in ["901301-1234567", "900001-1234567", "900100-1234567", "900431-1234567", "910229-2234567", "991232-4234567"] {
            assert!(matches!(ResidentNumber::parse(bad), Err(ResidentNumberError::BirthDate(_))), "{bad}");
        }
    }

    #[test]
    fn no_checksum_is_required() {
        // At most one last digit could satisfy the pre-2020 check-digit formula; every one of them is taken.
        for last in 0..=9 {
            assert!(ResidentNumber::parse(&format!("900101-123456{last}")).is_ok(), "last digit {last}");
        }
    }

    #[test]
    fn the_shape_is_thirteen_digits_with_an_optional_dash() {
        assert_eq!(ResidentNumber::parse("9001011234567").unwrap(), ResidentNumber::parse(" 900101-1234567 ").unwrap());
        for bad in [
            "",
            "900101-123456",
            "900101-12345678",
            "900101 1234567",
            "9001-011234567",
            "900101–1234567",
            "90010a-1234567",
            "９００１０１-1234567",
            "900101--234567",
            "900101-1234567\n1",
        ] {
            assert_eq!(ResidentNumber::parse(bad), Err(ResidentNumberError::Format), "{bad:?}");
        }
    }

    #[test]
    fn it_only_ever_formats_masked() {
        let n = ResidentNumber::parse("900101-1234567").unwrap();
        assert_eq!(n.masked(), "900101-1******");
        assert_eq!(n.to_string(), "900101-1******");
        assert_eq!(format!("{n:?}"), "ResidentNumber(900101-1******)");
        assert_eq!(format!("{:?}", Some(&n)), "Some(ResidentNumber(900101-1******))");
        assert_eq!(n.expose_digits(), b"9001011234567");
        assert_eq!(masked_text("9001011234567"), "900101-1******");
        assert_eq!(masked_text("900101-123456"), "[redacted]");
        assert!(contains_resident_number_shape("emp 900101-1234567"));
        assert!(contains_resident_number_shape("x9001011234567y"));
        assert!(contains_resident_number_shape("991332-1234567"), "the shape, valid or not");
        assert!(!contains_resident_number_shape("900101-123456"));
        assert!(!contains_resident_number_shape("E-2025-000123"));
        assert!(!contains_resident_number_shape("김철수"));
        // Error messages never carry the input.
        let e = ResidentNumber::parse("000229-1987654").unwrap_err().to_string();
        assert!(!e.contains("987654") && !e.contains("000229"), "{e}");
    }
}
