//! Changing a servant's `<bans>` in its configuration file (`/ban`, `/unban`).
//!
//! The article's servant changed its bans through MSXML and saved the whole document. Here
//! the file's text is spliced, so comments, order and layout stay as the user wrote them,
//! and the result is read back as a servant configuration before it replaces the file.

use std::path::Path;

use roxmltree::{Document, Node};

use super::error::ConfigError;
use super::reader::read_file;
use super::servant::{is_ban_target, ServantConfig};

/// A change to a servant's `<bans>`.
#[derive(Debug, Clone, Copy)]
pub enum BanEdit<'a> {
    Add(&'a str),
    Remove(&'a str),
}

/// Applies `edit` to the `<bans>` of the servant configuration at `path` and writes the
/// file back atomically (a temporary file beside it, then a rename), changing nothing
/// else in it: comments, order and layout stay as the user wrote them. Returns the new
/// list of targets.
pub fn edit_bans(path: &Path, edit: BanEdit) -> Result<Vec<String>, ConfigError> {
    let text = read_file(path)?;
    let before = ServantConfig::parse(path, &text)?;
    let new_text = splice_bans(&text, edit).map_err(|message| ConfigError::Invalid {
        path: path.to_owned(),
        row: 1,
        col: 1,
        message,
    })?;
    if new_text == text {
        return Ok(before.bans);
    }
    let after = ServantConfig::parse(path, &new_text)?;
    crate::files::write_atomically(path, new_text.as_bytes(), crate::files::Access::AsBefore)
        .map_err(|source| ConfigError::Write {
            path: path.to_owned(),
            source,
        })?;
    Ok(after.bans)
}

/// The text of a servant configuration with `edit` applied to its `<bans>`.
fn splice_bans(text: &str, edit: BanEdit) -> Result<String, String> {
    let doc = Document::parse(text).map_err(|e| e.to_string())?;
    let root = doc.root_element();
    let bans = root
        .children()
        .find(|c| c.is_element() && c.tag_name().name() == "bans");
    let targets_of = |ban: Node| {
        ban.children()
            .find(|c| c.has_tag_name("target"))
            .and_then(|t| t.text())
            .map(str::trim)
            .unwrap_or("")
            .to_owned()
    };
    let indent_at = |pos: usize| -> String {
        let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
        text[line_start..pos]
            .chars()
            .take_while(|c| c.is_whitespace())
            .collect()
    };
    match edit {
        BanEdit::Add(target) => {
            if !is_ban_target(target) {
                return Err(format!("{target:?} is not an IP address or host name"));
            }
            if let Some(bans) = bans {
                if bans
                    .children()
                    .filter(|c| c.has_tag_name("ban"))
                    .any(|b| targets_of(b) == target)
                {
                    return Ok(text.to_owned());
                }
                let range = bans.range();
                let indent = indent_at(range.start);
                let ban = format!("<ban><target>{target}</target></ban>");
                if text[range.clone()].ends_with("/>") {
                    let whole = format!("<bans>\n{indent}  {ban}\n{indent}</bans>");
                    return Ok(format!(
                        "{}{whole}{}",
                        &text[..range.start],
                        &text[range.end..]
                    ));
                }
                let close = range.end - "</bans>".len();
                // Inserted just before `</bans>`, which keeps its own indentation.
                let insert = if text[..close].ends_with(&format!("\n{indent}")) {
                    format!("  {ban}\n{indent}")
                } else {
                    ban
                };
                Ok(format!("{}{insert}{}", &text[..close], &text[close..]))
            } else {
                let range = root.range();
                let close = range.end - "</config>".len();
                let indent = format!("{}  ", indent_at(range.start));
                let block = format!(
                    "<bans>\n{indent}  <ban><target>{target}</target></ban>\n{indent}</bans>"
                );
                let insert = if text[..close].ends_with('\n') {
                    format!("{indent}{block}\n")
                } else {
                    format!("{block}\n")
                };
                Ok(format!("{}{insert}{}", &text[..close], &text[close..]))
            }
        }
        BanEdit::Remove(target) => {
            let Some(bans) = bans else {
                return Ok(text.to_owned());
            };
            let mut out = String::with_capacity(text.len());
            let mut from = 0;
            for ban in bans
                .children()
                .filter(|c| c.has_tag_name("ban") && targets_of(*c) == target)
            {
                let range = ban.range();
                // Take the line with it when the ban stood on a line of its own.
                let line_start = text[..range.start].rfind('\n').map_or(0, |i| i + 1);
                let start = if text[line_start..range.start].trim().is_empty() {
                    line_start.max(from)
                } else {
                    range.start
                };
                let mut end = range.end;
                if start == line_start && text[end..].starts_with('\n') {
                    end += 1;
                }
                out.push_str(&text[from..start]);
                from = end;
            }
            out.push_str(&text[from..]);
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_are_added_and_removed_keeping_the_rest_of_the_file() {
        let original = "<?xml version=\"1.0\"?>\n<!-- mine -->\n<config>\n  <connectionmgr>h</connectionmgr> <!-- the manager -->\n  <bans>\n    <ban><target>1.1.1.1</target></ban>\n  </bans>\n</config>\n";
        let added = splice_bans(original, BanEdit::Add("bob.lan")).unwrap();
        assert_eq!(
            added,
            "<?xml version=\"1.0\"?>\n<!-- mine -->\n<config>\n  <connectionmgr>h</connectionmgr> <!-- the manager -->\n  <bans>\n    <ban><target>1.1.1.1</target></ban>\n    <ban><target>bob.lan</target></ban>\n  </bans>\n</config>\n"
        );
        assert_eq!(
            splice_bans(&added, BanEdit::Add("bob.lan")).unwrap(),
            added,
            "no duplicates"
        );
        let removed = splice_bans(&added, BanEdit::Remove("1.1.1.1")).unwrap();
        assert_eq!(
            removed,
            "<?xml version=\"1.0\"?>\n<!-- mine -->\n<config>\n  <connectionmgr>h</connectionmgr> <!-- the manager -->\n  <bans>\n    <ban><target>bob.lan</target></ban>\n  </bans>\n</config>\n"
        );
        let none = "<config>\n  <connectionmgr>h</connectionmgr>\n</config>\n";
        let with = splice_bans(none, BanEdit::Add("::1")).unwrap();
        assert_eq!(
            with,
            "<config>\n  <connectionmgr>h</connectionmgr>\n  <bans>\n    <ban><target>::1</target></ban>\n  </bans>\n</config>\n"
        );
        assert_eq!(
            ServantConfig::parse(Path::new("config.xml"), &with)
                .unwrap()
                .bans,
            vec!["::1"]
        );
        assert!(splice_bans(none, BanEdit::Add("<evil>")).is_err());
    }

    #[test]
    fn edit_bans_writes_the_file_atomically() {
        let dir = std::env::temp_dir().join(format!("genp2p-bans-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.xml");
        std::fs::write(&path, "<config><connectionmgr>h</connectionmgr></config>").unwrap();
        assert_eq!(
            edit_bans(&path, BanEdit::Add("10.0.0.9")).unwrap(),
            vec!["10.0.0.9"]
        );
        assert_eq!(
            edit_bans(&path, BanEdit::Remove("10.0.0.9")).unwrap(),
            Vec::<String>::new()
        );
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("config.xml")],
            "no temporary file is left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
