"""Model zoo: known architectures, their preprocessing, and where their weights come from."""
from models.zoo import ARCHITECTURES, build, export

__all__ = ["ARCHITECTURES", "build", "export"]
