//! Generated schemas accept exactly what the types accept (issue 15, item 7): for every field
//! type the derive supports, values at and beyond each boundary (integers at their limits and
//! one past them, whole numbers written as floats, fractions, exponents, out-of-range floats,
//! strings, arrays and objects of each length that matters) are either accepted by both the
//! schema and the type, or refused by the schema: the schema never lets through what
//! deserialization then refuses. And the schema accepts everything the type writes: a value
//! the type reads is accepted again as the type serializes it. (The schema may refuse a form
//! serde also reads but never writes, such as `{"Red":null}` for a unit variant.)

#![allow(unreachable_pub)]

use std::collections::BTreeMap;
use std::num::{NonZeroI64, NonZeroU32};

use events::{Bus, Event, IngestError};

#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
enum Colour {
    Red,
    Green,
}

#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
enum Shape {
    Circle(u8),
    Square { side: u16 },
    Empty,
}

macro_rules! events {
    ($($ident:ident: $ty:ty = $name:literal,)*) => {
        $(
            #[derive(Event, Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
            #[event(name = $name)]
            struct $ident {
                v: $ty,
            }
        )*

        /// Each event: its name, and the type's own JSON for a JSON text it accepts (read
        /// as the bus reads it: parsed, then deserialized from the value).
        fn cases() -> Vec<(&'static str, fn(&str) -> Option<String>)> {
            vec![$(($name, |text: &str| {
                let value: serde_json::Value = serde_json::from_str(text).ok()?;
                let typed: $ident = serde_json::from_value(value).ok()?;
                serde_json::to_string(&typed).ok()
            }),)*]
        }
    };
}

events! {
    U8: u8 = "b.u8",
    U16: u16 = "b.u16",
    U32: u32 = "b.u32",
    U64: u64 = "b.u64",
    Usize: usize = "b.usize",
    U128: u128 = "b.u128",
    I8: i8 = "b.i8",
    I16: i16 = "b.i16",
    I32: i32 = "b.i32",
    I64: i64 = "b.i64",
    Isize: isize = "b.isize",
    I128: i128 = "b.i128",
    F32: f32 = "b.f32",
    F64: f64 = "b.f64",
    Bool: bool = "b.bool",
    Text: String = "b.string",
    Char: char = "b.char",
    OptU32: Option<u32> = "b.option",
    VecU8: Vec<u8> = "b.vec",
    ArrU8: [u8; 2] = "b.array",
    Tuple: (u8, bool) = "b.tuple",
    NzU32: NonZeroU32 = "b.nonzero_u32",
    NzI64: NonZeroI64 = "b.nonzero_i64",
    Unit: Colour = "b.unit_enum",
    Data: Shape = "b.data_enum",
    Boxed: Box<u16> = "b.box",
    Map: BTreeMap<String, u8> = "b.map",
}

/// Values at and around every boundary, as JSON text.
fn values() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let bounds: [i128; 12] = [
        i8::MIN.into(),
        i8::MAX.into(),
        i16::MIN.into(),
        i16::MAX.into(),
        i32::MIN.into(),
        i32::MAX.into(),
        i64::MIN.into(),
        i64::MAX.into(),
        u8::MAX.into(),
        u16::MAX.into(),
        u32::MAX.into(),
        u64::MAX.into(),
    ];
    for b in bounds.into_iter().chain([0, 1]) {
        for n in [b - 1, b, b + 1] {
            out.push(n.to_string());
            out.push(format!("{n}.0"));
        }
    }
    out.extend(
        [
            "0.5",
            "-0.5",
            "-0.0",
            "1e3",
            "1E3",
            "1.5e3",
            "2e-3",
            "1e19",
            "1e20",
            "-1e19",
            "9007199254740993.0",
            "3.4028235e38",
            "3.5e38",
            "-3.5e38",
            "1.7976931348623157e308",
            "1e400",
            "null",
            "true",
            "false",
            r#""""#,
            r#""a""#,
            r#""ab""#,
            r#""😀""#,
            r#""\u0000""#,
            r#""Red""#,
            r#""Blue""#,
            r#""Empty""#,
            r#"{"Circle":3}"#,
            r#"{"Circle":256}"#,
            r#"{"Circle":3.0}"#,
            r#"{"Square":{"side":65535}}"#,
            r#"{"Square":{"side":65536}}"#,
            r#"{"Square":{}}"#,
            r#"{"Red":null}"#,
            "[]",
            "[0]",
            "[0,1]",
            "[0,1,2]",
            "[256,0]",
            "[1.0,2.0]",
            "[-1,0]",
            "[1,true]",
            "[1,false,2]",
            "{}",
            r#"{"a":1}"#,
            r#"{"a":256}"#,
            r#"{"a":1.0}"#,
            r#"{"a":-1}"#,
        ]
        .map(str::to_owned),
    );
    out
}

#[test]
fn schemas_and_types_agree_on_every_boundary() {
    let bus = Bus::builder().no_handlers().build().unwrap();
    let values = values();
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for (name, type_reads) in cases() {
        for value in &values {
            let text = format!(r#"{{"v":{value}}}"#);
            let by_bus = bus.decode_json(name, 1, text.as_bytes());
            // Past the schema, deserialization never refuses: except for a literal a double
            // cannot hold (`9007199254740993.0`), which the schema, evaluated on the double
            // read, may accept. The bus refuses it rather than change the number, and never
            // gives an integer field a number other than the one written.
            let lossy = lossy(value);
            if lossy && name != "b.f32" && name != "b.f64" {
                assert!(
                    by_bus.is_err(),
                    "{name} {value}: accepted a number it cannot hold"
                );
            }
            if let Err(IngestError::Decode { reason, .. }) = &by_bus
                && !lossy
            {
                mismatches.push(format!(
                    "{name} {value}: the schema accepts it, the type does not ({reason})"
                ));
            }
            // What the type accepts, written as the type writes it, the schema accepts.
            // (A type that cannot read what it writes, like an `f32` read as infinity and
            // written as `null`, is the type's own affair.)
            if let Some(own) = type_reads(&text).filter(|own| type_reads(own).is_some()) {
                if let Err(e) = bus.decode_json(name, 1, own.as_bytes()) {
                    mismatches.push(format!(
                        "{name} {value}: the type reads it and writes {own}, which the bus \
                         refuses ({e})"
                    ));
                }
            }
            checked += 1;
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {checked} disagree:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Whether JSON number literal `value` means a whole number that a double does not hold
/// exactly, so that serde_json reads another number: computed with `i128` arithmetic.
fn lossy(value: &str) -> bool {
    let Ok(f) = value.parse::<f64>() else {
        return false;
    };
    if f.fract() != 0.0 || value.parse::<i64>().is_ok() || value.parse::<u64>().is_ok() {
        return false;
    }
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    if value.contains(['e', 'E']) || frac.bytes().any(|d| d != b'0') {
        // Only the forms `n` and `n.0` are made lossy by `values()`, plus the named one.
        return value == "9007199254740993.0";
    }
    int.parse::<i128>().is_ok_and(|n| f as i128 != n)
}

#[test]
fn the_lossy_literals_are_the_expected_ones() {
    assert!(lossy("9007199254740993.0"));
    assert!(lossy("-9223372036854775809"));
    assert!(lossy("9223372036854775807.0"));
    assert!(!lossy("9223372036854775808.0"), "2^63 is a double");
    assert!(!lossy("1.0"));
    assert!(!lossy("9223372036854775807"), "read as an integer");
}

#[test]
fn integer_schemas_carry_their_range() {
    let schema = serde_json::to_value(<U32 as Event>::info().schema()).unwrap();
    assert_eq!(schema["properties"]["v"]["maximum"], u32::MAX);
    let schema = serde_json::to_value(<I64 as Event>::info().schema()).unwrap();
    assert_eq!(schema["properties"]["v"]["minimum"], i64::MIN);
    assert_eq!(schema["properties"]["v"]["maximum"], i64::MAX);
    let schema = serde_json::to_value(<U64 as Event>::info().schema()).unwrap();
    assert_eq!(schema["properties"]["v"]["maximum"], u64::MAX);
}

#[test]
fn whole_numbers_written_as_floats_reach_integer_fields() {
    let bus = Bus::builder().no_handlers().build().unwrap();
    // JSON Schema counts `1.0` as an integer, so the type takes it too; the value is exact.
    let event = bus.decode_json("b.u64", 1, br#"{"v": 4.2e3}"#).unwrap();
    assert_eq!(event.to_json().unwrap(), serde_json::json!({ "v": 4200 }));
    // Floats stay floats where the type asks for one.
    let event = bus.decode_json("b.f64", 1, br#"{"v": 1.0}"#).unwrap();
    assert_eq!(event.to_json().unwrap(), serde_json::json!({ "v": 1.0 }));
}

#[test]
fn a_number_a_double_cannot_hold_is_refused_not_rounded() {
    let bus = Bus::builder().no_handlers().build().unwrap();
    // Found by the fuzz test: the fraction is lost to the double, which is then whole.
    for lossy in [
        r#"{"v": 184467440737095510.5615}"#,
        r#"{"v": 9007199254740993.0}"#,
        r#"{"v": 1.00000000000000001}"#,
    ] {
        let err = bus.decode_json("b.u64", 1, lossy.as_bytes()).unwrap_err();
        assert!(matches!(err, IngestError::Decode { .. }), "{lossy}: {err}");
    }
    // A whole number the double holds exactly is read as that integer.
    let event = bus
        .decode_json("b.u64", 1, br#"{"v": 9007199254740992.0}"#)
        .unwrap();
    assert_eq!(
        event.to_json().unwrap(),
        serde_json::json!({ "v": 9_007_199_254_740_992_u64 })
    );
    let event = bus
        .decode_json("b.i64", 1, br#"{"v": -9223372036854775808.0}"#)
        .unwrap();
    assert_eq!(
        event.to_json().unwrap(),
        serde_json::json!({ "v": i64::MIN })
    );
}
