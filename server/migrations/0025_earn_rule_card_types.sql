-- A card type's points multiplier (issue 17 item 4), as an earn rule's condition: the rule
-- holds for a member with an ACTIVE card of one of these types (card_types.code). Empty:
-- any member, as before.
ALTER TABLE earn_rules ADD COLUMN card_types text[] NOT NULL DEFAULT '{}';
