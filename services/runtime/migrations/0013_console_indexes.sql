-- What the web console reads on every page view: the newest received and sent first, a sent
-- disclosure's receipts and revocation (by in_reply_to), the newest accesses first.
CREATE INDEX inbox_received ON inbox (received_at_ms);
CREATE INDEX inbox_in_reply_to ON inbox (in_reply_to);
CREATE INDEX sent_created ON sent (created_at_ms);
CREATE INDEX sent_in_reply_to ON sent (in_reply_to);
