# A plain Rack 2.2 app (Debian ruby-rack) on WEBrick, as a real admin would
# write it: Rack::Request's params (Rack 2.2 splits the query on both `&`
# and `;`), Rack::MethodOverride (`_method` in a POST form body, or the
# X-HTTP-Method-Override header) and Rack's cookie parser. Every executed
# handler appends one JSON line to the record log and answers 200 with it.
#
# usage: ruby rack_app.rb <port> <record-log>
require 'json'
require 'rack'
require 'rack/handler/webrick'

PORT = Integer(ARGV[0] || ENV.fetch('PORT'))
LOG = ARGV[1] || ENV.fetch('RECORD_LOG')

class Recorder
  def call(env)
    req = Rack::Request.new(env)
    rec = {
      server: 'rack',
      handler: handler_for(req),
      method: req.request_method,
      path: req.path_info,
      host: req.host,
      query: req.GET,
      body: body_of(req),
      session: req.cookies['SESSIONID'],
      assertion: env['HTTP_X_STEPUP_ASSERTION'],
      headers: headers_of(env),
      params: req.params,
    }
    line = JSON.generate(rec)
    File.open(LOG, 'a') { |f| f.write(line + "\n") }
    [200, { 'Content-Type' => 'application/json', 'Content-Length' => line.bytesize.to_s }, [line]]
  rescue StandardError => e
    msg = JSON.generate(server: 'rack', error: e.class.name)
    [400, { 'Content-Type' => 'application/json', 'Content-Length' => msg.bytesize.to_s }, [msg]]
  end

  def handler_for(req)
    m = req.request_method
    p = req.path_info
    return 'admin.vhost' if req.host == 'admin.example'
    return 'user.delete' if m == 'DELETE' && p =~ %r{\A/admin/users/[^/]+\z}
    return 'user.delete' if m == 'POST' && p =~ %r{\A/admin/users/[^/]+/delete\z}
    return 'sql.run' if p == '/admin/sql/run'
    return 'transfer' if m == 'POST' && p == '/api/transfers'
    if p =~ %r{\A/api/items/[^/]+\z}
      return 'item.delete' if m == 'DELETE'
      return 'item.update' if m == 'POST'
    end
    return(req.GET['action'] == 'delete' ? 'legacy.delete' : 'legacy.view') if m == 'GET' && p == '/legacy'
    'other'
  end

  def body_of(req)
    if req.media_type == 'application/json'
      raw = req.body.read
      req.body.rewind
      begin
        JSON.parse(raw)
      rescue JSON::ParserError
        nil
      end
    else
      req.POST
    end
  end

  def headers_of(env)
    h = {}
    env.each do |k, v|
      if k.start_with?('HTTP_') && k != 'HTTP_VERSION'
        h[k.sub('HTTP_', '').downcase.tr('_', '-')] = v
      elsif %w[CONTENT_TYPE CONTENT_LENGTH].include?(k)
        h[k.downcase.tr('_', '-')] = v
      end
    end
    h
  end
end

app = Rack::Builder.new do
  use Rack::MethodOverride
  run Recorder.new
end

Rack::Handler::WEBrick.run(app, Host: '127.0.0.1', Port: PORT, AccessLog: [],
                                Logger: WEBrick::Log.new($stderr, WEBrick::Log::WARN))
