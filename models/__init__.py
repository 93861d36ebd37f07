from models.item import ItemModel
from models.item_tag import ItemTagModel
from models.revoked_token import RevokedTokenModel
from models.store import StoreModel
from models.tag import TagModel
from models.user import UserModel

__all__ = [
    "ItemModel",
    "ItemTagModel",
    "RevokedTokenModel",
    "StoreModel",
    "TagModel",
    "UserModel",
]
