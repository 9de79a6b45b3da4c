// Reads RFC 5322 messages (JSON array of strings on stdin) and prints, for each, how npm's
// mailparser (the parser of Nodemailer's family, used by many webmail and helpdesk tools) decodes
// From, To, Reply-To and Subject. Used by tests/test_mail_headers.py.
const { simpleParser } = require('mailparser');

function addrs(a) {
  if (!a) return null;
  return a.value.map((x) => ({ name: x.name, address: x.address }));
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', async () => {
  const out = [];
  for (const raw of JSON.parse(input)) {
    const m = await simpleParser(raw);
    out.push({ from: addrs(m.from), to: addrs(m.to), replyTo: addrs(m.replyTo), subject: m.subject });
  }
  process.stdout.write(JSON.stringify(out));
});
