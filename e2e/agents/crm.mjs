// The run every agent does, whatever its framework: the user asks to fix a
// bounced e-mail address; the model looks the contact up, updates it (the
// CRM refuses once: a rate limit), updates it again, and answers.
import { z } from "zod";

export const systemPrompt = "You maintain CRM contacts. Fix bounced e-mail addresses.";
export const userPrompt = "Jane Doe's e-mail jane@olddomain.com bounced; her new address is jane@newdomain.com. Update the CRM.";

// The model's turns: a tool call, or the answer.
export const lookup = { toolCallId: "call_lookup_1", toolName: "crm_lookup_contact", input: { email: "jane@olddomain.com" } };
export const update = (toolCallId) => ({
  toolCallId,
  toolName: "crm_update_contact",
  input: { contactId: "48291", field: "email", value: "jane@newdomain.com" },
});
export const answer = { text: "Jane Doe's email is now jane@newdomain.com (contact 48291)." };
export const turns = [lookup, update("call_update_1"), update("call_update_2"), answer];

export class RateLimitError extends Error {
  constructor(message) {
    super(message);
    this.name = "RateLimitError";
  }
}

// crmTools returns the two tools (description, input schema, run), the
// update failing on its first call when failOnce.
export function crmTools({ failOnce = true } = {}) {
  let updates = 0;
  return {
    crm_lookup_contact: {
      description: "Look up a CRM contact by e-mail address",
      schema: z.object({ email: z.string() }),
      run: async ({ email }) => ({ contactId: "48291", name: "Jane Doe", email }),
    },
    crm_update_contact: {
      description: "Update one field of a CRM contact",
      schema: z.object({ contactId: z.string(), field: z.string(), value: z.string() }),
      run: async ({ contactId, field, value }) => {
        if (failOnce && ++updates === 1) {
          throw new RateLimitError("HubSpot API 429: rate limited, retry after 1s");
        }
        return { contactId, field, previous: "jane@olddomain.com", value, status: "200 OK (field updated)" };
      },
    },
  };
}
