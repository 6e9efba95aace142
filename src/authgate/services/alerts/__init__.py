"""Alerts: rules over the audit trail, their evaluation, and delivery to the sinks.

* ``kinds``: each kind of rule, defined once (``AlertKind``);
* ``rules``: the rules administrators set, validated when set; ``engine``: evaluating
  them against new audit records (and API key expiry reminders);
* ``messages``: what the sinks carry (``Alert``, ``CheckpointNotice``) and the
  ``AlertSink`` protocol; ``dispatch``: a queue, retries and a worker per sink;
* the sinks, one module each: ``log_sink``, ``webhook_sink``, ``syslog_sink`` (wire
  formats in ``formats``: RFC 5424 and CEF), ``email_sink``; their targets checked in
  ``targets``; ``configuration``: the sinks the settings configure.
"""
