-- Campaigns change after creation (CampaignService.UpdateCampaign and EndCampaign).
--
-- meta_version counts changes to what the Redis gate copies from the campaign besides its
-- counters (allotted, per-member limit, window): flashsale/lua/load.lua applies them only
-- when this is newer than the copy's, so a reload that read the row before an update
-- cannot put the old values back. `version` stays the counters' own (taken), which the
-- group commit bumps.
--
-- EndCampaign gives the units not sold back to the item, so a campaign that sold nothing
-- ends with units_allotted = 0: the check allows it (CreateCampaign still asks for > 0).
ALTER TABLE campaigns ADD COLUMN meta_version bigint NOT NULL DEFAULT 1;
ALTER TABLE campaigns DROP CONSTRAINT campaigns_units_allotted_check;
ALTER TABLE campaigns ADD CONSTRAINT campaigns_units_allotted_check CHECK (units_allotted >= 0);
