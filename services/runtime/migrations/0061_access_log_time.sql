-- The console's access log pages show the newest first.
CREATE INDEX access_log_at ON access_log (at_ms);
