"""``thor sft``: records -> input_ids + labels (data.py, chat.py) and TRL's SFTTrainer (trainer.py)."""
