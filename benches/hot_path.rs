//! Microbenchmarks of the pieces every `transaction.send` and every SMPP
//! message passes through: `cargo bench --bench hot_path`. They show where
//! the time of one request goes (bench/run measures the whole server).

use std::collections::HashSet;
use std::str::FromStr;

use bytes::BytesMut;
use divan::{Bencher, black_box};
use moms::api::envelope::Reply;
use moms::api::params::Params;
use moms::domain::carrier::{Carrier, CarrierTable};
use moms::domain::message_body::MessageBody;
use moms::domain::phone::{PhoneNumber, parse_region};
use moms::smpp::pdu::encoding;
use moms::smpp::receipt;
use rusmpp::pdus::SubmitSm;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::RegisteredDelivery;
use rusmpp::{Command, CommandStatus};
use tokio_util::codec::{Decoder, Encoder};

fn main() {
    divan::main();
}

/// A `transaction.send` body as clients post it.
const SEND_FORM: &[u8] = b"client_id=1001&token=5ef8692fea36f3e0954c964917d1f60a&format=json\
&campaign_id=20001&to=%2B1+%28310%29+555-0123&message=Your+code+is+4711.+Reply+STOP+to+end\
&from_name=Alerts&udp_order=8812&callback=https%3A%2F%2Fexample.com%2Fhook%3Fa%3D1";

const GSM_TEXT: &str = "Your order 8812 has shipped and will arrive on Tuesday between 9 and 5. \
Track it at example.com/t/8812 or reply HELP for help, STOP to end. Thanks for shopping with us!";
const UCS2_TEXT: &str =
    "Ihre Bestellung ist unterwegs 🚚 — wir melden uns, sobald sie da ist. Danke! 😊";
const LONG_GSM: &str = "€ [long] message that needs several segments; ";

#[divan::bench]
fn params_decode_send_form() -> Params {
    let mut params = Params::default();
    params.add_form(black_box(SEND_FORM));
    params
}

fn accepted() -> Reply {
    Reply::success("API Request Accepted")
        .text("message_id", 100_004_711)
        .text("hash", "k3j9x0qa")
}

#[divan::bench]
fn envelope_xml_accepted() -> String {
    black_box(accepted()).to_xml()
}

#[divan::bench]
fn envelope_json_accepted() -> String {
    black_box(accepted()).to_json(false)
}

#[divan::bench(args = ["3105550123", "+1 (310) 555-0123", "+44 20 7946 0958"])]
fn phone_parse(bencher: Bencher, input: &str) {
    let region = parse_region("US").expect("US is a region");
    bencher.bench(|| PhoneNumber::parse(black_box(input), region));
}

/// The texts by a short name, so the report stays readable.
fn text(name: &str) -> &'static str {
    match name {
        "gsm7" => GSM_TEXT,
        _ => UCS2_TEXT,
    }
}

#[divan::bench(args = ["gsm7", "ucs2"])]
fn body_measure(name: &str) -> MessageBody {
    MessageBody::measure(black_box(text(name)))
}

#[divan::bench]
fn gsm7_segment_long(bencher: Bencher) {
    let text = LONG_GSM.repeat(12);
    bencher.bench(|| encoding::encode(black_box(&text), 7));
}

#[divan::bench(args = ["gsm7", "ucs2"])]
fn smpp_encode_segments(name: &str) -> encoding::Encoded {
    encoding::encode(black_box(text(name)), 7)
}

fn submit_sm() -> Command {
    let pdu = SubmitSm::builder()
        .source_addr(COctetString::from_str("21534").expect("ascii"))
        .destination_addr(COctetString::from_str("13105550123").expect("ascii"))
        .registered_delivery(RegisteredDelivery::from(1u8))
        .short_message(OctetString::from_slice(GSM_TEXT.as_bytes()).expect("short"))
        .build();
    Command::new(CommandStatus::EsmeRok, 42, pdu)
}

#[divan::bench]
fn smpp_submit_sm_to_bytes(bencher: Bencher) {
    let mut codec = CommandCodec::new();
    let mut out = BytesMut::with_capacity(512);
    bencher.bench_local(|| {
        out.clear();
        codec.encode(submit_sm(), &mut out).expect("encodes");
    });
}

#[divan::bench]
fn smpp_submit_sm_from_bytes(bencher: Bencher) {
    let mut codec = CommandCodec::new();
    let mut wire = BytesMut::new();
    codec.encode(submit_sm(), &mut wire).expect("encodes");
    bencher.bench_local(|| {
        let mut input = wire.clone();
        codec.decode(&mut input).expect("decodes").expect("whole")
    });
}

#[divan::bench]
fn smpp_receipt_parse() -> Option<receipt::Receipt> {
    receipt::parse(
        black_box(Some("1A2B3C")),
        Some(2),
        black_box(
            b"id:1A2B3C sub:001 dlvrd:001 submit date:2611270210 done date:2611270210 stat:DELIVRD err:000 text:",
        ),
    )
}

#[divan::bench(args = [10, 1000])]
fn carrier_resolve(bencher: Bencher, carriers: i64) {
    let list = (0..carriers)
        .map(|i| Carrier {
            id: i + 2,
            name: format!("Carrier {i}"),
            prefixes: vec![format!("1{}", 200 + i % 800), format!("44{}", 10 + i % 90)],
            served: true,
            mms: true,
            connector: "smpp".into(),
            mms_max_bytes: 0,
        })
        .collect();
    let ported = (0..10_000u64).map(|i| (13_105_550_000 + i, 2)).collect();
    let table = CarrierTable::new(list, ported, HashSet::new());
    let region = parse_region("US").expect("US is a region");
    let number = PhoneNumber::parse("4155550123", region).expect("valid");
    bencher.bench(|| table.resolve(black_box(&number)));
}
