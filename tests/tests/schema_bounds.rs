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
    let bus = Bus::builder().scope("no::handlers").build().unwrap();
    let values = values();
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for (name, type_reads) in cases() {
        for value in &values {
            let text = format!(r#"{{"v":{value}}}"#);
            let by_bus = bus.decode_json(name, 1, text.as_bytes());
            // Past the schema, deserialization never refuses. One exception, refused all the
            // same: serde_json reads every number from -2^63 - 1024 to -2^63 as the double
            // -2^63, so for that double the bus cannot tell `-9223372036854775808.0` (an
            // `i64`) from `-9223372036854775809` (not one); it refuses it (`Decode`) rather
            // than guess.
            let minus_2_63 = serde_json::from_str::<serde_json::Value>(value)
                .ok()
                .and_then(|v| v.as_f64())
                .is_some_and(|f| f == -9_223_372_036_854_775_808.0);
            if let Err(IngestError::Decode { reason, .. }) = &by_bus
                && !minus_2_63
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
    let bus = Bus::builder().scope("no::handlers").build().unwrap();
    // JSON Schema counts `1.0` as an integer, so the type takes it too; the value is exact.
    let event = bus.decode_json("b.u64", 1, br#"{"v": 4.2e3}"#).unwrap();
    assert_eq!(event.to_json().unwrap(), serde_json::json!({ "v": 4200 }));
    // Floats stay floats where the type asks for one.
    let event = bus.decode_json("b.f64", 1, br#"{"v": 1.0}"#).unwrap();
    assert_eq!(event.to_json().unwrap(), serde_json::json!({ "v": 1.0 }));
}
