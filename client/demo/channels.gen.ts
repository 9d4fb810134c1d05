// Code generated from realtime/channels/channels.schema.json by client/scripts/channels-ts.mjs (go generate); DO NOT EDIT.
// The channel families declared in Go (encore.app/realtime/typed) and their payload types.
import { typedChannel, type TypedChannel } from "../src/index.js";

/**
 * ChannelPayload is the payload of any typed channel.
 */
export type ChannelPayload = OrderEvent | Note;

/**
 * OrderEvent is a change in the life of an order.
 */
export interface OrderEvent {
  /**
   * ID is the order's ID.
   */
  id: string;
  /**
   * Status is the order's status after the change.
   */
  status: "created" | "paid" | "shipped" | "delivered" | "cancelled";
  /**
   * TotalCents is the order's total, in cents.
   */
  totalCents: number;
  /**
   * At is when the change happened.
   */
  at: string;
  /**
   * Note is an optional remark for the customer.
   */
  note?: string;
}
/**
 * Note is a short message posted to a room.
 */
export interface Note {
  /**
   * Author is who wrote the note.
   */
  author: string;
  /**
   * Text is the note, plain text.
   */
  text: string;
}

/**
 * `orders.{id}`: events carry {@link OrderEvent} (Go: encore.app/realtime/channels.OrderEvent).
 */
export function orders(id: string): TypedChannel<OrderEvent> {
  return typedChannel<OrderEvent>("orders.{id}", [id]);
}

/**
 * `public.notes.{room}`: events carry {@link Note} (Go: encore.app/realtime/channels.Note).
 */
export function notes(room: string): TypedChannel<Note> {
  return typedChannel<Note>("public.notes.{room}", [room]);
}
