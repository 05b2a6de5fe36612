//! What the fake hub reads out of transfers (events, partition keys, properties) and what it
//! answers on `$cbs` and `$management`.

use std::sync::{Arc, Mutex};

use fe2o3_amqp::types::messaging::annotations::OwnedKey;
use fe2o3_amqp::types::messaging::message::__private::Serializable;
use fe2o3_amqp::types::messaging::message::DecodeIntoMessage;
use fe2o3_amqp::types::messaging::{AmqpValue, ApplicationProperties, Body, Message, MessageId, Properties};
use fe2o3_amqp::types::primitives::{SimpleValue, Timestamp, Value};

use super::{OfferedToken, State, StoredEvent, StoredTransfer};

const BATCH_FORMAT: u32 = 0x8001_3700;

pub(super) fn encoded_size(message: &Message<Body<Value>>) -> usize {
    serde_amqp::serialized_size(&Serializable(message)).unwrap_or(0)
}

pub(super) fn store(
    message: &Message<Body<Value>>,
    format: Option<u32>,
    target: &str,
    count_only: bool,
) -> (StoredTransfer, Vec<StoredEvent>) {
    let bytes = encoded_size(message);
    let batch_format = format == Some(BATCH_FORMAT);
    if count_only {
        let n = match &message.body {
            Body::Data(sections) if batch_format => sections.len(),
            _ => 1,
        };
        return (StoredTransfer { bytes, events: n, batch_format, target: target.to_string() }, Vec::new());
    }
    let events: Vec<StoredEvent> = match (&message.body, batch_format) {
        (Body::Data(sections), true) => sections
            .iter()
            .map(|d| {
                let inner = Body::<Value>::decode_message_from_reader(serde_amqp::read::SliceReader::new(&d.0))
                    .expect("a batch section is an encoded AMQP message");
                event(&inner)
            })
            .collect(),
        _ => vec![event(message)],
    };
    let t = StoredTransfer { bytes, events: events.len(), batch_format, target: target.to_string() };
    (t, events)
}

fn event(m: &Message<Body<Value>>) -> StoredEvent {
    let body = match &m.body {
        Body::Data(sections) => sections.iter().flat_map(|d| d.0.iter().copied()).collect(),
        other => format!("{other:?}").into_bytes(),
    };
    let properties = m
        .application_properties
        .as_ref()
        .map(|p| p.0.iter().map(|(k, v)| (k.clone(), simple_to_string(v))).collect())
        .unwrap_or_default();
    let partition_key = m.message_annotations.as_ref().and_then(|a| {
        a.0.iter().find_map(|(k, v)| match (k, v) {
            (OwnedKey::Symbol(s), Value::String(v)) if s.0 == "x-opt-partition-key" => Some(v.clone()),
            _ => None,
        })
    });
    let props = m.properties.as_ref();
    StoredEvent {
        body,
        properties,
        partition_key,
        content_type: props.and_then(|p| p.content_type.as_ref()).map(|c| c.0.clone()),
        message_id: props.and_then(|p| p.message_id.as_ref()).map(message_id_string),
    }
}

fn message_id_string(id: &MessageId) -> String {
    match id {
        MessageId::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn simple_to_string(v: &SimpleValue) -> String {
    match v {
        SimpleValue::String(s) => s.clone(),
        SimpleValue::Symbol(s) => s.0.clone(),
        SimpleValue::Timestamp(t) => format!("timestamp:{}", t.milliseconds()),
        SimpleValue::Long(n) => n.to_string(),
        SimpleValue::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

fn app_prop<'a>(m: &'a Message<Body<Value>>, key: &str) -> Option<&'a SimpleValue> {
    m.application_properties.as_ref().and_then(|p| p.0.get(key))
}

pub(super) fn put_token(state: &Arc<Mutex<State>>, m: &Message<Body<Value>>) -> Message<Body<Value>> {
    let text = |k: &str| app_prop(m, k).map(simple_to_string).unwrap_or_default();
    let token = match &m.body {
        Body::Value(v) => match &v.0 {
            Value::String(s) => s.clone(),
            other => format!("{other:?}"),
        },
        other => format!("{other:?}"),
    };
    let mut s = state.lock().unwrap();
    let status = match s.faults.put_token_status {
        0 => 202,
        n => n,
    };
    s.tokens.push(OfferedToken { kind: text("type"), audience: text("name"), token, accepted: status == 202 });
    let description = if status == 202 { "Accepted" } else { "InvalidSignature: The token has an invalid signature." };
    Message::builder()
        .application_properties(
            ApplicationProperties::builder()
                .insert("status-code", SimpleValue::Int(status as i32))
                .insert("status-description", SimpleValue::String(description.into()))
                .build(),
        )
        .body(Body::Value(AmqpValue(Value::Null)))
        .build()
}

pub(super) fn management(m: &Message<Body<Value>>) -> Message<Body<Value>> {
    let name = app_prop(m, "name").map(simple_to_string).unwrap_or_default();
    let mut map = fe2o3_amqp::types::primitives::OrderedMap::new();
    map.insert(Value::String("name".into()), Value::String(name));
    map.insert(Value::String("created_at".into()), Value::Timestamp(Timestamp::from_milliseconds(1_700_000_000_000)));
    map.insert(Value::String("partition_count".into()), Value::Int(4));
    let ids = fe2o3_amqp::types::primitives::Array(vec![
        Value::String("0".into()),
        Value::String("1".into()),
        Value::String("2".into()),
        Value::String("3".into()),
    ]);
    map.insert(Value::String("partition_ids".into()), Value::Array(ids));
    Message::builder()
        .application_properties(
            ApplicationProperties::builder()
                .insert("status-code", SimpleValue::Int(200))
                .insert("status-description", SimpleValue::String("OK".into()))
                .build(),
        )
        .body(Body::Value(AmqpValue(Value::Map(map))))
        .build()
}

pub(super) fn with_correlation(
    mut reply: Message<Body<Value>>,
    request: &Message<Body<Value>>,
) -> Message<Body<Value>> {
    let id = request.properties.as_ref().and_then(|p| p.message_id.clone());
    reply.properties = Some(Properties { correlation_id: id, ..Properties::default() });
    reply
}
