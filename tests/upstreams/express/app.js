// A plain Express 4 app as a real admin would write it: Express's router
// (case-insensitive, non-strict by default), its body parsers, cookie-parser
// and method-override. Every executed handler appends one JSON line to the
// record log and answers 200 with that record.
//
// usage: node app.js <port> <record-log>
'use strict';
const fs = require('fs');
const express = require('express');
const cookieParser = require('cookie-parser');
const methodOverride = require('method-override');

const port = Number(process.argv[2] || process.env.PORT);
const logPath = process.argv[3] || process.env.RECORD_LOG;
if (!port || !logPath) {
  console.error('usage: node app.js <port> <record-log>');
  process.exit(2);
}

const app = express();
app.use(cookieParser());
app.use(express.urlencoded({ extended: false }));
app.use(express.json());
app.use(methodOverride('X-HTTP-Method-Override'));
app.use(methodOverride('_method'));

function record(handler) {
  return (req, res) => {
    const rec = {
      server: 'express',
      handler,
      method: req.method,
      path: req.path,
      url: req.originalUrl,
      host: req.hostname || '',
      query: req.query,
      body: req.body === undefined ? null : req.body,
      session: req.cookies && req.cookies.SESSIONID !== undefined ? String(req.cookies.SESSIONID) : null,
      assertion: req.get('X-StepUp-Assertion') ?? null,
      headers: req.headers,
    };
    fs.appendFileSync(logPath, JSON.stringify(rec) + '\n');
    res.status(200).json(rec);
  };
}

app.use((req, res, next) => {
  if (req.hostname === 'admin.example') return record('admin.vhost')(req, res);
  next();
});
app.delete('/admin/users/:name', record('user.delete'));
app.post('/admin/users/:name/delete', record('user.delete'));
app.all('/admin/sql/run', record('sql.run'));
app.post('/api/transfers', record('transfer'));
app.delete('/api/items/:id', record('item.delete'));
app.post('/api/items/:id', record('item.update'));
app.get('/legacy', (req, res) =>
  record(req.query.action === 'delete' ? 'legacy.delete' : 'legacy.view')(req, res));
app.use(record('other'));
// A body the parsers refuse still reaches a record, so a test sees it.
app.use((err, req, res, next) => {
  res.status(err.status || 400).json({ server: 'express', error: String(err.message) });
});

app.listen(port, '127.0.0.1');
