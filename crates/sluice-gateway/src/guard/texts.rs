//! The texts of a request by channel, in each front door's format: the user's turns, the
//! system prompt, tool results (indirect injection arrives there), read and rewritten in
//! place in the request's JSON. Images pass unscreened and are counted; the assistant's earlier
//! turns are the model's own words and are not screened again.

use serde_json::Value;
use sluice_providers::Endpoint;

use super::Channel;

/// Visits every text of `body` (a request to `endpoint`) with its channel; `visit` may
/// rewrite it. Returns the images seen.
pub fn visit(endpoint: Endpoint, body: &mut Value, visit: &mut dyn FnMut(&mut String, Channel)) -> u32 {
    let mut images = 0;
    match endpoint {
        Endpoint::ChatCompletions => {
            for m in array(body.get_mut("messages")) {
                let channel = match m.get("role").and_then(Value::as_str) {
                    Some("system" | "developer") => Channel::System,
                    Some("user") => Channel::User,
                    Some("tool" | "function") => Channel::ToolResults,
                    _ => continue,
                };
                content(m.get_mut("content"), channel, &mut images, visit);
            }
        }
        Endpoint::Messages => {
            content(body.get_mut("system"), Channel::System, &mut images, visit);
            for m in array(body.get_mut("messages")) {
                if m.get("role").and_then(Value::as_str) != Some("user") {
                    continue;
                }
                content(m.get_mut("content"), Channel::User, &mut images, visit);
            }
        }
        Endpoint::Responses => {
            if let Some(Value::String(s)) = body.get_mut("instructions") {
                visit(s, Channel::System);
            }
            match body.get_mut("input") {
                Some(Value::String(s)) => visit(s, Channel::User),
                Some(Value::Array(items)) => {
                    for item in items {
                        if item.get("type").and_then(Value::as_str) == Some("function_call_output") {
                            if let Some(Value::String(s)) = item.get_mut("output") {
                                visit(s, Channel::ToolResults);
                            }
                            continue;
                        }
                        let channel = match item.get("role").and_then(Value::as_str) {
                            Some("system" | "developer") => Channel::System,
                            Some("user") => Channel::User,
                            _ => continue,
                        };
                        content(item.get_mut("content"), channel, &mut images, visit);
                    }
                }
                _ => {}
            }
        }
        Endpoint::Completions => strings(body.get_mut("prompt"), visit),
        Endpoint::Embeddings => strings(body.get_mut("input"), visit),
        _ => {}
    }
    images
}

fn array(v: Option<&mut Value>) -> impl Iterator<Item = &mut Value> {
    v.and_then(Value::as_array_mut).into_iter().flatten()
}

/// A string, or a list of strings (a prompt, an embeddings input).
fn strings(v: Option<&mut Value>, visit: &mut dyn FnMut(&mut String, Channel)) {
    match v {
        Some(Value::String(s)) => visit(s, Channel::User),
        Some(Value::Array(items)) => {
            for item in items {
                if let Value::String(s) = item {
                    visit(s, Channel::User);
                }
            }
        }
        _ => {}
    }
}

/// A message's content: a string, or parts (text, images, Anthropic's tool results).
fn content(v: Option<&mut Value>, channel: Channel, images: &mut u32, visit: &mut dyn FnMut(&mut String, Channel)) {
    match v {
        Some(Value::String(s)) => visit(s, channel),
        Some(Value::Array(parts)) => {
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text" | "input_text") => {
                        if let Some(Value::String(s)) = part.get_mut("text") {
                            visit(s, channel);
                        }
                    }
                    Some("tool_result") => content(part.get_mut("content"), Channel::ToolResults, images, visit),
                    Some("image_url" | "image" | "input_image") => *images += 1,
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn seen(endpoint: Endpoint, body: Value) -> (Vec<(String, Channel)>, u32) {
        let mut body = body;
        let mut found = Vec::new();
        let images = visit(endpoint, &mut body, &mut |s, c| found.push((s.clone(), c)));
        (found, images)
    }

    #[test]
    fn finds_each_front_doors_texts_by_channel() {
        let (found, images) = seen(
            Endpoint::ChatCompletions,
            json!({"messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": [{"type": "text", "text": "u1"}, {"type": "image_url", "image_url": {"url": "x"}}]},
                {"role": "assistant", "content": "a"},
                {"role": "tool", "tool_call_id": "t", "content": "tool says"}]}),
        );
        assert_eq!(
            found,
            [
                ("sys".to_owned(), Channel::System),
                ("u1".to_owned(), Channel::User),
                ("tool says".to_owned(), Channel::ToolResults)
            ]
        );
        assert_eq!(images, 1);
        let (found, _) = seen(
            Endpoint::Messages,
            json!({"system": [{"type": "text", "text": "sys"}], "messages": [
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "doc"}]}, {"type": "text", "text": "u"}]},
                {"role": "assistant", "content": "a"}]}),
        );
        assert_eq!(
            found,
            [
                ("sys".to_owned(), Channel::System),
                ("doc".to_owned(), Channel::ToolResults),
                ("u".to_owned(), Channel::User)
            ]
        );
        let (found, _) = seen(
            Endpoint::Responses,
            json!({"instructions": "sys", "input": [{"role": "user", "content": [{"type": "input_text", "text": "u"}]},
                   {"type": "function_call_output", "call_id": "c", "output": "out"}]}),
        );
        assert_eq!(
            found,
            [
                ("sys".to_owned(), Channel::System),
                ("u".to_owned(), Channel::User),
                ("out".to_owned(), Channel::ToolResults)
            ]
        );
    }
}
