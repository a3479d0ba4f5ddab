//! Julia cannot be installed here, so the bindings in julia/Ember.jl are checked against
//! include/ember.h by text: every `ccall` names an exported function with the same number and
//! types of arguments and the same return type, and every mirrored struct has the header's
//! fields in order with matching types.

use std::collections::HashMap;

/// The header's opaque handle types.
const OPAQUE: &[&str] = &["ember_knn_index", "ember_model"];

/// C type (normalised spacing) → the Julia type a `ccall` must use for it.
fn julia_type(c: &str) -> String {
    let c = c.trim();
    let mapped = match c {
        "const float *" | "float *" => "Ptr{Float32}",
        "const double *" | "double *" => "Ptr{Float64}",
        "const uint32_t *" | "uint32_t *" => "Ptr{UInt32}",
        "const uint8_t *" | "uint8_t *" => "Ptr{UInt8}",
        "const void *" => "Ptr{Cvoid}",
        "const size_t *" | "size_t *" => "Ptr{Csize_t}",
        "size_t" => "Csize_t",
        "uint32_t" => "UInt32",
        "int32_t" => "Int32",
        "uint64_t" => "UInt64",
        "float" => "Float32",
        "double" => "Float64",
        "void *" | "ember_progress_fn" => "Ptr{Cvoid}",
        "void" => "Cvoid",
        "enum ember_status" => "Int32",
        "const char *" => "Cstring",
        _ => "",
    };
    if !mapped.is_empty() {
        return mapped.to_string();
    }
    // Structs: `struct ember_tsne_params` ↔ TsneParams (by value), pointers ↔ Ref{...}.
    let camel = |name: &str| -> String {
        name.trim_start_matches("ember_")
            .split('_')
            .map(|w| {
                let mut ch = w.chars();
                ch.next()
                    .map(|f| f.to_uppercase().collect::<String>() + ch.as_str())
                    .unwrap_or_default()
            })
            .collect()
    };
    // Opaque handles are plain pointers in Julia; `T **` outputs are `Ref{Ptr{Cvoid}}`.
    if OPAQUE.iter().any(|o| c.contains(o)) {
        return if c.ends_with("**") {
            "Ref{Ptr{Cvoid}}".to_string()
        } else {
            "Ptr{Cvoid}".to_string()
        };
    }
    if let Some(rest) = c.strip_prefix("const struct ") {
        return format!("Ref{{{}}}", camel(rest.trim_end_matches('*').trim()));
    }
    if let Some(rest) = c.strip_prefix("struct ") {
        return camel(rest.trim());
    }
    panic!("no Julia mapping for C type '{c}'")
}

/// The header's functions: name → (return type, argument types).
fn header_functions(h: &str) -> HashMap<String, (String, Vec<String>)> {
    let mut out = HashMap::new();
    let mut decl = String::new();
    for line in h.lines() {
        let t = line.trim();
        if t.starts_with("//") || t.starts_with('#') || t.is_empty() {
            continue;
        }
        if decl.is_empty() && (t.starts_with("typedef") || !t.contains('(')) {
            continue;
        }
        decl.push(' ');
        decl.push_str(t);
        if !t.ends_with(';') {
            continue;
        }
        let d = std::mem::take(&mut decl);
        let open = d.find('(').unwrap();
        let head = d[..open].trim();
        let name_at = head
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap()
            + 1;
        let (ret, name) = (head[..name_at].trim(), &head[name_at..]);
        let args = d[open + 1..d.rfind(')').unwrap()].trim();
        let types: Vec<String> = if args == "void" {
            vec![]
        } else {
            args.split(',')
                .map(|a| {
                    let a = a.trim();
                    let cut = a
                        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap()
                        + 1;
                    a[..cut].trim().to_string()
                })
                .collect()
        };
        out.insert(name.to_string(), (ret.to_string(), types));
    }
    out
}

/// The header's structs: name → [(field, C type)].
fn header_structs(h: &str) -> HashMap<String, Vec<(String, String)>> {
    let mut out = HashMap::new();
    let mut current: Option<(String, Vec<(String, String)>)> = None;
    for line in h.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("typedef struct ") {
            if rest.ends_with(';') {
                continue; // an opaque handle: no fields
            }
            current = Some((rest.trim_end_matches('{').trim().to_string(), vec![]));
        } else if t.starts_with('}') {
            if let Some((name, fields)) = current.take() {
                out.insert(name, fields);
            }
        } else if let Some((_, fields)) = current.as_mut() {
            if t.starts_with("//") || t.is_empty() {
                continue;
            }
            let t = t.trim_end_matches(';');
            let cut = t.rfind(' ').unwrap();
            fields.push((t[cut + 1..].to_string(), t[..cut].trim().to_string()));
        }
    }
    out
}

fn split_top(s: &str) -> Vec<String> {
    let (mut out, mut depth, mut cur) = (vec![], 0, String::new());
    for ch in s.chars() {
        match ch {
            '(' | '{' => depth += 1,
            ')' | '}' => depth -= 1,
            _ => {}
        }
        if ch == ',' && depth == 0 {
            out.push(cur.trim().to_string());
            cur.clear();
        } else {
            cur.push(ch);
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

#[test]
fn julia_ccalls_match_the_header() {
    let root = ember_tests::root();
    let h = std::fs::read_to_string(root.join("include/ember.h")).unwrap();
    let jl = std::fs::read_to_string(root.join("julia/Ember.jl")).unwrap();
    let funcs = header_functions(&h);
    assert!(funcs.contains_key("ember_tsne") && funcs.contains_key("ember_icon_loss"));
    let mut checked = 0;
    let flat: String = jl.split_whitespace().collect::<Vec<_>>().join(" ");
    for after in flat.split("ccall(").skip(1) {
        // The call's own text: up to the parenthesis that closes `ccall(`.
        let mut depth = 1;
        let end = after
            .char_indices()
            .find(|&(_, ch)| {
                depth += match ch {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .unwrap()
            .0;
        let part = &after[..end];
        // (:name, libember), Ret, (T1, T2, ...), args...
        let name = part
            .split(':')
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .trim();
        let rest = part
            .split_once("libember)")
            .unwrap()
            .1
            .trim_start_matches(',')
            .trim();
        let items = split_top(rest);
        let ret = &items[0];
        let tuple = items[1]
            .trim()
            .trim_start_matches('(')
            .trim_end_matches(')');
        let args: Vec<String> = split_top(tuple)
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect();
        let (c_ret, c_args) = funcs
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in include/ember.h"));
        assert_eq!(&julia_type(c_ret), ret, "{name}: return type");
        assert_eq!(args.len(), c_args.len(), "{name}: argument count");
        for (i, (j, c)) in args.iter().zip(c_args).enumerate() {
            // `const void *` takes a parameter struct by reference (ember_model_fit).
            if c == "const void *" && j.starts_with("Ref{") && !j.starts_with("Ref{Ptr") {
                continue;
            }
            assert_eq!(&julia_type(c), j, "{name}: argument {i} ({c})");
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} ccalls found");

    // Mirrored structs: the same fields, in order, with matching types.
    let structs = header_structs(&h);
    let jl_type = |c: &str| julia_type(c);
    let mut seen = 0;
    for (c_name, jl_name) in [
        ("ember_tsne_params", "TsneParams"),
        ("ember_umap_params", "UmapParams"),
        ("ember_ne_params", "NeParams"),
        ("ember_similarity", "Similarity"),
        ("ember_transform_params", "TransformParams"),
    ] {
        let fields = &structs[c_name];
        let start = jl
            .find(&format!("struct {jl_name}\n"))
            .unwrap_or_else(|| panic!("{jl_name} missing"));
        let body = &jl[start..jl[start..].find("\nend").unwrap() + start];
        let jl_fields: Vec<(String, String)> = body
            .lines()
            .skip(1)
            .map(|l| l.trim())
            .filter(|l| l.contains("::"))
            .map(|l| {
                let (a, b) = l.split_once("::").unwrap();
                (a.to_string(), b.to_string())
            })
            .collect();
        assert_eq!(jl_fields.len(), fields.len(), "{jl_name}: field count");
        for ((jn, jt), (cn, ct)) in jl_fields.iter().zip(fields) {
            assert_eq!(jn, cn, "{jl_name}: field order");
            assert_eq!(jt, &jl_type(ct), "{jl_name}.{jn}");
        }
        seen += 1;
    }
    assert_eq!(seen, 5);
}
