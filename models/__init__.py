from models.erasure import ErasureModel
from models.event import EventFeedModel, EventModel
from models.idempotency_key import IdempotencyKeyModel
from models.item import ItemModel
from models.item_import import ItemImportModel
from models.item_import_chunk import ItemImportChunkModel
from models.item_tag import ItemTagModel
from models.recent_write import RecentWriteModel
from models.store import StoreModel
from models.tag import TagModel
from models.throttle import ThrottleModel
from models.token_family import TokenFamilyModel
from models.user import UserModel
from models.webhook import WebhookDeliveryModel, WebhookModel, WebhookResendModel

__all__ = [
    "ErasureModel",
    "EventFeedModel",
    "EventModel",
    "IdempotencyKeyModel",
    "ItemImportChunkModel",
    "ItemImportModel",
    "ItemModel",
    "ItemTagModel",
    "RecentWriteModel",
    "StoreModel",
    "TagModel",
    "ThrottleModel",
    "TokenFamilyModel",
    "UserModel",
    "WebhookDeliveryModel",
    "WebhookModel",
    "WebhookResendModel",
]
