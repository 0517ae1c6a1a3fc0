//! `generateContent` ⇄ the canonical exchange: requests built from the conversation (tool results
//! matched to their call's function name), answers read back, safety blocks made refusals.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::chat::{ChatRequest, ChatResponse, Image, Part, Role, StopReason, ToolChoice};
use crate::error::ErrorClass;
use crate::fault::{MalformedResponse, ResponseFault};
use crate::usage::Usage;

/// Builds a Gemini `generateContent` body from the canonical request.
pub fn chat_to_request(req: &ChatRequest) -> Result<Bytes, crate::error::RequestError> {
    let mut contents = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        let mut parts = Vec::with_capacity(m.content.len());
        for p in &m.content {
            match p {
                Part::Text(t) if t.is_empty() => {}
                Part::Text(t) => parts.push(json!({"text": t})),
                Part::Image(Image::Base64 { media_type, data }) => {
                    parts.push(json!({"inlineData": {"mimeType": media_type, "data": data}}))
                }
                Part::Image(Image::Url(url)) => {
                    parts.push(json!({"fileData": {"mimeType": guess_mime(url), "fileUri": url}}))
                }
                Part::ToolUse { name, input, .. } => {
                    let args = if input.is_object() { input.clone() } else { json!({}) };
                    parts.push(json!({"functionCall": {"name": name, "args": args}}))
                }
                Part::ToolResult {
                    tool_use_id, content, ..
                } => {
                    let name = tool_name(req, tool_use_id).unwrap_or(tool_use_id.as_str());
                    let text: String = content
                        .iter()
                        .filter_map(|c| match c {
                            Part::Text(t) => Some(t.as_str()),
                            _ => None,
                        })
                        .collect();
                    // Gemini wants an object; JSON text stays structured, anything else is wrapped.
                    let response = match serde_json::from_str::<Value>(&text) {
                        Ok(v @ Value::Object(_)) => v,
                        _ => json!({"content": text}),
                    };
                    parts.push(json!({"functionResponse": {"name": name, "response": response}}))
                }
            }
        }
        let role = if m.role == Role::Assistant { "model" } else { "user" };
        match contents.last_mut() {
            Some(Value::Object(last)) if last.get("role").and_then(Value::as_str) == Some(role) => {
                if let Some(Value::Array(p)) = last.get_mut("parts") {
                    p.extend(parts);
                }
            }
            _ => contents.push(json!({"role": role, "parts": parts})),
        }
    }
    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !req.system.is_empty() {
        out.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": req.system.join("\n\n")}]}),
        );
    }
    if !req.tools.is_empty() {
        let decls: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut d = json!({"name": t.name, "parameters": t.parameters});
                if let Some(desc) = &t.description {
                    d["description"] = json!(desc);
                }
                d
            })
            .collect();
        out.insert("tools".into(), json!([{"functionDeclarations": decls}]));
    }
    if let Some(c) = &req.tool_choice {
        let cfg = match c {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Tool(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        out.insert("toolConfig".into(), json!({"functionCallingConfig": cfg}));
    }
    let mut gen_cfg = Map::new();
    if let Some(n) = req.max_tokens {
        gen_cfg.insert("maxOutputTokens".into(), json!(n));
    }
    if let Some(t) = req.temperature {
        gen_cfg.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        gen_cfg.insert("topP".into(), json!(p));
    }
    if let Some(k) = req.top_k {
        gen_cfg.insert("topK".into(), json!(k));
    }
    if !req.stop.is_empty() {
        gen_cfg.insert("stopSequences".into(), json!(req.stop));
    }
    if !gen_cfg.is_empty() {
        out.insert("generationConfig".into(), Value::Object(gen_cfg));
    }
    for (k, v) in &req.extra {
        out.insert(k.clone(), v.clone());
    }
    Ok(Bytes::from(serde_json::to_vec(&Value::Object(out)).unwrap_or_default()))
}

fn guess_mime(url: &str) -> &'static str {
    let lower = url.to_ascii_lowercase();
    if lower.ends_with(".png") {
        "image/png"
    } else if lower.ends_with(".webp") {
        "image/webp"
    } else if lower.ends_with(".gif") {
        "image/gif"
    } else {
        "image/jpeg"
    }
}

/// The function name of the tool call `id` in the conversation.
fn tool_name<'a>(req: &'a ChatRequest, id: &str) -> Option<&'a str> {
    req.messages.iter().flat_map(|m| &m.content).find_map(|p| match p {
        Part::ToolUse { id: i, name, .. } if i == id => Some(name.as_str()),
        _ => None,
    })
}

pub fn stop_reason_from(r: &str) -> StopReason {
    match r {
        "MAX_TOKENS" => StopReason::MaxTokens,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            StopReason::ContentFilter
        }
        _ => StopReason::EndTurn,
    }
}

pub fn usage_from(v: &Value) -> Usage {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let prompt = n("promptTokenCount");
    // Thinking tokens are billed as output; Gemini counts them apart from the candidates.
    let completion = n("candidatesTokenCount") + n("thoughtsTokenCount");
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        cached_tokens: n("cachedContentTokenCount"),
        cache_write_tokens: 0,
        reasoning_tokens: n("thoughtsTokenCount"),
    }
}

/// The safety refusal in a response with no usable candidate, if that is what it is.
fn blocked(v: &Value) -> Option<String> {
    if let Some(reason) = v.pointer("/promptFeedback/blockReason").and_then(Value::as_str) {
        return Some(format!(
            "The prompt was blocked by the provider's safety filters ({reason})."
        ));
    }
    let c = v.pointer("/candidates/0")?;
    let reason = c.get("finishReason").and_then(Value::as_str)?;
    let empty = c
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    (empty && stop_reason_from(reason) == StopReason::ContentFilter)
        .then(|| format!("The answer was blocked by the provider's safety filters ({reason})."))
}

/// Reads a Gemini response (or a stream chunk, which has the same shape).
pub fn response_to_chat(body: &[u8]) -> Result<ChatResponse, ResponseFault> {
    let v: Value = serde_json::from_slice(body).map_err(|e| MalformedResponse(e.to_string()))?;
    if let Some(message) = blocked(&v) {
        return Err(ResponseFault::Refused {
            class: ErrorClass::ContentPolicy,
            message,
        });
    }
    let c = v
        .pointer("/candidates/0")
        .ok_or_else(|| MalformedResponse("no candidates".to_owned()))?;
    let mut content = Vec::new();
    let mut calls = 0;
    for p in c
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if p.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(t) = p.get("text").and_then(Value::as_str) {
            match content.last_mut() {
                Some(Part::Text(s)) => s.push_str(t),
                _ => content.push(Part::Text(t.to_owned())),
            }
        } else if let Some(f) = p.get("functionCall") {
            content.push(Part::ToolUse {
                id: f
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("call_{calls}"), str::to_owned),
                name: f.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
                input: f.get("args").cloned().unwrap_or_else(|| json!({})),
            });
            calls += 1;
        }
    }
    let has_calls = calls > 0;
    Ok(ChatResponse {
        id: v
            .get("responseId")
            .and_then(Value::as_str)
            .unwrap_or("gemini")
            .to_owned(),
        model: v
            .get("modelVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        content,
        stop_reason: c.get("finishReason").and_then(Value::as_str).map(|r| {
            let s = stop_reason_from(r);
            if has_calls && s == StopReason::EndTurn {
                StopReason::ToolUse
            } else {
                s
            }
        }),
        stop_sequence: None,
        usage: v.get("usageMetadata").map(usage_from).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_request_becomes_gemini_with_tool_names_resolved() {
        let body = json!({
            "model": "g", "max_tokens": 10, "temperature": 0.1, "stop": ["END"],
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "call_0", "content": "Sunny"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required"
        });
        let chat = crate::openai_chat::request_to_chat(body.to_string().as_bytes()).unwrap();
        let out: Value = serde_json::from_slice(&chat_to_request(&chat).unwrap()).unwrap();
        assert_eq!(out["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
        assert_eq!(out["contents"][1]["role"], "model");
        assert_eq!(
            out["contents"][1]["parts"][0]["functionCall"],
            json!({"name": "weather", "args": {"city": "Oslo"}})
        );
        assert_eq!(
            out["contents"][2]["parts"][0]["functionResponse"],
            json!({"name": "weather", "response": {"content": "Sunny"}})
        );
        assert_eq!(
            out["generationConfig"],
            json!({"maxOutputTokens": 10, "temperature": 0.1, "stopSequences": ["END"]})
        );
        assert_eq!(out["toolConfig"]["functionCallingConfig"]["mode"], "ANY");
    }

    #[test]
    fn safety_blocks_are_content_policy_errors() {
        let prompt = json!({"promptFeedback": {"blockReason": "SAFETY"}});
        match response_to_chat(prompt.to_string().as_bytes()) {
            Err(ResponseFault::Refused { class, .. }) => assert_eq!(class, ErrorClass::ContentPolicy),
            other => panic!("{other:?}"),
        }
        let answer = json!({"candidates": [{"finishReason": "SAFETY", "content": {"parts": []}}]});
        assert!(matches!(
            response_to_chat(answer.to_string().as_bytes()),
            Err(ResponseFault::Refused {
                class: ErrorClass::ContentPolicy,
                ..
            })
        ));
        let ok = json!({"candidates": [{"finishReason": "STOP", "content": {"parts": [{"text": "hi"}]}}],
                        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "thoughtsTokenCount": 2,
                                          "cachedContentTokenCount": 1}});
        let r = response_to_chat(ok.to_string().as_bytes()).unwrap();
        assert_eq!(r.usage.completion_tokens, 3);
        assert_eq!(r.usage.reasoning_tokens, 2);
        assert_eq!(r.usage.cached_tokens, 1);
    }
}
