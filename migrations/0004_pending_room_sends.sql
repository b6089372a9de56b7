-- A room message a user sent is archived when the gateway accepts it, in the same commit as
-- its pending_sends row, so that a crash between writing it to the network and the network's
-- echo leaves no message that the network saw but the archive lacks. The row keeps the
-- stanza-id chosen then: a replay at the next start reuses it (and archives nothing again).
ALTER TABLE pending_sends ADD COLUMN stanza_id TEXT;
