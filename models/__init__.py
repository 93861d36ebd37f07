from models.item import ItemModel
from models.item_tag import ItemTagModel
from models.store import StoreModel
from models.tag import TagModel

__all__ = ["ItemModel", "ItemTagModel", "StoreModel", "TagModel"]
