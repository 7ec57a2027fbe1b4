//! A real SMTP server for tests: it speaks enough of RFC 5321 for a mail client to deliver
//! (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), keeps every message it accepts, and can be
//! told to refuse messages with a permanent (5xx) or a transient (4xx) reply.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message as delivered, its headers and body decoded.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    /// The text body, transfer encoding undone.
    pub body: String,
    /// The message as received.
    pub raw: Vec<u8>,
}

impl Mail {
    /// A header's decoded value.
    pub fn header(&self, name: &str) -> Option<String> {
        let parsed = mailparse::parse_mail(&self.raw).ok()?;
        mailparse::MailHeaderMap::get_first_value(parsed.headers.as_slice(), name)
    }
}

/// How the sink answers the end of DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accept,
    /// 550: the server's final word.
    Refuse,
    /// 451: try again later.
    Defer,
}

/// A running sink; messages go to `addr`.
#[derive(Clone)]
pub struct SmtpSink {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    answer: Arc<Mutex<Answer>>,
}

impl SmtpSink {
    pub async fn start() -> anyhow::Result<SmtpSink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let sink = SmtpSink {
            addr: listener.local_addr()?,
            mails: Default::default(),
            answer: Arc::new(Mutex::new(Answer::Accept)),
        };
        let serving = sink.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let sink = serving.clone();
                tokio::spawn(async move {
                    let _ = sink.session(socket).await;
                });
            }
        });
        Ok(sink)
    }

    /// `smtp://` URL of the sink (plain SMTP: a client needs its development mode).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().expect("sink lock").clone()
    }

    pub fn answer(&self, answer: Answer) {
        *self.answer.lock().expect("sink lock") = answer;
    }

    async fn session(&self, socket: tokio::net::TcpStream) -> std::io::Result<()> {
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read);
        write.write_all(b"220 crs-test-sink ESMTP\r\n").await?;
        let (mut from, mut to) = (String::new(), Vec::new());
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let command = line.trim_end().to_owned();
            let verb = command.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => b"250-crs-test-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
                "HELO" | "NOOP" => b"250 OK\r\n",
                "RSET" => {
                    from.clear();
                    to.clear();
                    b"250 OK\r\n"
                }
                "MAIL" => {
                    from = address(&command);
                    b"250 OK\r\n"
                }
                "RCPT" => {
                    to.push(address(&command));
                    b"250 OK\r\n"
                }
                "DATA" => {
                    write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                    let mut raw = Vec::new();
                    loop {
                        line.clear();
                        if lines.read_line(&mut line).await? == 0 {
                            return Ok(());
                        }
                        if line == ".\r\n" || line == ".\n" {
                            break;
                        }
                        // Undo dot-stuffing.
                        let text = line.strip_prefix('.').unwrap_or(&line);
                        raw.extend_from_slice(text.as_bytes());
                    }
                    let answer = *self.answer.lock().expect("sink lock");
                    match answer {
                        Answer::Accept => {
                            let parsed = mailparse::parse_mail(&raw).ok();
                            let subject = parsed
                                .as_ref()
                                .and_then(|m| {
                                    mailparse::MailHeaderMap::get_first_value(m.headers.as_slice(), "Subject")
                                })
                                .unwrap_or_default();
                            let body = parsed.as_ref().and_then(|m| m.get_body().ok()).unwrap_or_default();
                            self.mails.lock().expect("sink lock").push(Mail {
                                from: std::mem::take(&mut from),
                                to: std::mem::take(&mut to),
                                subject,
                                body,
                                raw,
                            });
                            b"250 OK queued\r\n"
                        }
                        Answer::Refuse => b"550 5.7.1 refused by the test\r\n",
                        Answer::Defer => b"451 4.3.0 try again later\r\n",
                    }
                }
                "QUIT" => {
                    write.write_all(b"221 bye\r\n").await?;
                    return Ok(());
                }
                _ => b"502 command not implemented\r\n",
            };
            write.write_all(reply).await?;
        }
    }
}

/// The address in `MAIL FROM:<a@b>` or `RCPT TO:<a@b>`.
fn address(command: &str) -> String {
    command.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map(|(a, _)| a.to_owned()).unwrap_or_default()
}
