"""Every URL the web process serves, in one list."""
from __future__ import annotations

from typing import Any

from handlers import auth, church, docs, health, messages, metrics, stream, users, webapp
from handlers import carrier_webhooks
from handlers import admin_cache, groups, members, numbers
from handlers import conversations, conversation_contact
from handlers import admin_queues, recurring
from handlers import archive
from handlers import webhook_endpoints
from handlers import api_keys, stats
from handlers import message_preview, templates
from server import carriers

API = r"/api/v1"


def routes() -> list[tuple[str, type, dict[str, Any]] | tuple[str, type]]:
    """(pattern, handler class[, initialize kwargs]); `server.app` adds `deps` to each."""
    return [
        (r"/health", health.HealthHandler),
        (r"/ready", health.ReadyHandler),
        (r"/metrics", metrics.MetricsHandler),
        # One flow for every carrier, handed the carrier module that owns its protocol.
        (r"/webhooks/telnyx", carrier_webhooks.CarrierWebhookHandler,
         {"carrier": carriers.carrier("telnyx")}),
        (r"/webhooks/twilio", carrier_webhooks.CarrierWebhookHandler,
         {"carrier": carriers.carrier("twilio")}),
        (API + r"/auth/register", auth.RegisterHandler),
        (API + r"/auth/login", auth.LoginHandler),
        (API + r"/auth/refresh", auth.RefreshHandler),
        (API + r"/auth/logout", auth.LogoutHandler),
        (API + r"/auth/me", auth.MeHandler),
        (API + r"/stream/ticket", auth.StreamTicketHandler),
        (API + r"/stream", stream.StreamSocketHandler),
        (API + r"/conversations", conversations.ConversationListHandler),
        (API + r"/conversations/([^/]+)", conversations.ConversationHandler),
        (API + r"/conversations/([^/]+)/messages", conversations.ConversationMessagesHandler),
        (API + r"/conversations/([^/]+)/read", conversations.ConversationReadHandler),
        (API + r"/conversations/([^/]+)/contact",
         conversation_contact.ConversationContactHandler),
        (API + r"/conversations/([^/]+)/notes", conversation_contact.ConversationNotesHandler),
        (API + r"/church", church.ChurchHandler),
        (API + r"/users", users.UsersHandler),
        (API + r"/users/([^/]+)", users.UserHandler),
        (API + r"/members", members.MembersHandler),
        (API + r"/members/import", members.MemberImportHandler),
        (API + r"/members/([^/]+)", members.MemberHandler),
        (API + r"/groups", groups.GroupsHandler),
        (API + r"/groups/([^/]+)", groups.GroupHandler),
        (API + r"/groups/([^/]+)/members", groups.GroupMembersHandler),
        (API + r"/numbers", numbers.NumbersHandler),
        (API + r"/numbers/([^/]+)", numbers.NumberHandler),
        (API + r"/api-keys", api_keys.ApiKeysHandler),
        (API + r"/api-keys/([^/]+)", api_keys.ApiKeyHandler),
        (API + r"/api-keys/([^/]+)/rotate", api_keys.ApiKeyRotateHandler),
        (API + r"/stats/summary", stats.StatsSummaryHandler),
        (API + r"/webhook-endpoints", webhook_endpoints.WebhookEndpointsHandler),
        (API + r"/webhook-endpoints/([^/]+)", webhook_endpoints.WebhookEndpointHandler),
        (API + r"/webhook-endpoints/([^/]+)/rotate-secret",
         webhook_endpoints.WebhookEndpointRotateHandler),
        (API + r"/webhook-endpoints/([^/]+)/test", webhook_endpoints.WebhookEndpointTestHandler),
        (API + r"/webhook-endpoints/([^/]+)/deliveries",
         webhook_endpoints.WebhookDeliveriesHandler),
        (API + r"/webhook-endpoints/([^/]+)/deliveries/([^/]+)/redeliver",
         webhook_endpoints.WebhookRedeliverHandler),
        (API + r"/admin/cache", admin_cache.AdminCacheHandler),
        (API + r"/admin/queues", admin_queues.AdminQueuesHandler),
        (API + r"/admin/dead-letters", admin_queues.AdminDeadLettersHandler),
        (API + r"/admin/dead-letters/([^/]+)/requeue",
         admin_queues.AdminDeadLetterRequeueHandler),
        (API + r"/messages", messages.MessagesHandler),
        (API + r"/messages/preview", message_preview.MessagePreviewHandler),
        (API + r"/messages/([^/]+)", messages.MessageHandler),
        (API + r"/messages/([^/]+)/recipients", messages.MessageRecipientsHandler),
        (API + r"/messages/([^/]+)/cancel", messages.MessageCancelHandler),
        (API + r"/templates", templates.TemplatesHandler),
        (API + r"/templates/([^/]+)", templates.TemplateHandler),
        (API + r"/recurring-messages", recurring.RecurringListHandler),
        (API + r"/recurring-messages/([^/]+)", recurring.RecurringHandler),
        (API + r"/recurring-messages/([^/]+)/runs", recurring.RecurringRunsHandler),
        (API + r"/archive/messages", archive.ArchiveMessagesHandler),
        (API + r"/archive/messages/([^/]+)/recipients",
         archive.ArchiveMessageRecipientsHandler),
        (API + r"/openapi.json", docs.OpenApiHandler),
        (API + r"/docs/?", docs.DocsHandler),
        (API + r"/docs/init.js", docs.DocsInitHandler),
        (API + r"/docs/static/(.+)", docs.SwaggerStaticHandler),
        (r"/", webapp.AppShellHandler),
        (r"/static/([0-9a-f]{1,64})/(.+)", webapp.StaticAssetHandler),
    ]
